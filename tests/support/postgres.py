"""What the PostgreSQL server under test says, so that tests never depend on one
version's wording (CI runs them against the machine's server and the embedded one)."""

import psycopg2


def server_message(conn, statement):
    """The primary message this server gives for `statement`, which must fail; rolled back."""
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    except psycopg2.Error as exc:
        return exc.diag.message_primary
    finally:
        conn.rollback()
    raise AssertionError(f'{statement!r} did not fail')
