"""What the PostgreSQL server under test says, so that tests never depend on one
version's wording (CI runs them against the machine's server and the embedded one)."""

import psycopg2
from psycopg2 import sql


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



def count(conn, relation):
    """Rows in a table or view (in the connection's transaction)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(relation)))
        return cursor.fetchone()[0]


def leftover_tables(conn):
    """Staging and replaced tables data-flow has not removed (in the connection's transaction)."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relname LIKE '\\_df\\_%' AND relkind = 'r'")
        return [r[0] for r in cursor.fetchall()]
