"""What the datasets database holds: tables, their rows, the views on them, their grants.
Functions take a psycopg2 connection or cursor and change nothing, except `apply_grants`."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

DEFAULT_SCHEMA = 'public'

# (privilege, grantee role or None for PUBLIC, grantable)
Grant = tuple[str, str | None, bool]
# (schema, name, relkind, definition, options) of a view
DependentView = tuple[str, str, str, str, list[str] | None]


def qualified(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def regclass_text(schema: str, table: str) -> str:
    # to_regclass parses its argument as SQL; quote both parts so any name round-trips.
    return '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


def relation_exists(cursor: Cursor, name: str, schema: str = DEFAULT_SCHEMA) -> bool:
    cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (regclass_text(schema, name),))
    return bool(cursor.fetchone()[0])  # type: ignore[index]


def relation_oid(cursor: Cursor, name: str, schema: str = DEFAULT_SCHEMA) -> int | None:
    cursor.execute('SELECT to_regclass(%s)::oid', (regclass_text(schema, name),))
    return cursor.fetchone()[0]  # type: ignore[index, no-any-return]


def table_exists(conn: Connection, table: str, schema: str = DEFAULT_SCHEMA) -> bool:
    with conn.cursor() as cursor:
        return relation_exists(cursor, table, schema)


def row_count(conn: Connection, table: str, schema: str = DEFAULT_SCHEMA) -> int:
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(qualified(schema, table)))
        return int(cursor.fetchone()[0])  # type: ignore[index]


def dependent_views(cursor: Cursor, oid: int) -> list[DependentView]:
    """Views that read the relation directly."""
    cursor.execute(
        """
        SELECT DISTINCT n.nspname, v.relname, v.relkind, pg_get_viewdef(v.oid), v.reloptions
        FROM pg_depend d
        JOIN pg_rewrite r ON r.oid = d.objid
        JOIN pg_class v ON v.oid = r.ev_class
        JOIN pg_namespace n ON n.oid = v.relnamespace
        WHERE d.classid = 'pg_rewrite'::regclass
          AND d.refclassid = 'pg_class'::regclass
          AND d.refobjid = %s
          AND v.oid <> %s
        ORDER BY 1, 2
        """,
        (oid, oid),
    )
    return cursor.fetchall()


def grants_of(cursor: Cursor, oid: int) -> list[Grant]:
    """The relation's ACL, one grant per row."""
    cursor.execute(
        """
        SELECT a.privilege_type,
               CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
               a.is_grantable
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = %s
        """,
        (oid,),
    )
    return cursor.fetchall()


def apply_grants(cursor: Cursor, grants: list[Grant], schema: str, table: str) -> None:
    for privilege, grantee, grantable in grants:
        cursor.execute(
            sql.SQL('GRANT {} ON TABLE {} TO {}{}').format(
                sql.SQL(privilege),  # from aclexplode: a fixed set of keywords
                qualified(schema, table),
                sql.SQL('PUBLIC') if grantee is None else sql.Identifier(grantee),
                sql.SQL(' WITH GRANT OPTION') if grantable else sql.SQL(''),
            )
        )


def preview(conn: Connection, table: str, limit: int, schema: str = DEFAULT_SCHEMA,
            timeout_ms: int = 10000) -> tuple[list[str], list[tuple[Any, ...]]]:
    """(column names, first `limit` rows) of a table, read in a read-only transaction with
    a statement timeout: a preview can neither change data nor hold the database up."""
    with conn.cursor() as cursor:
        cursor.execute('SET TRANSACTION READ ONLY')
        cursor.execute('SET LOCAL statement_timeout = %s', (f'{int(timeout_ms)}ms',))
        cursor.execute(sql.SQL('SELECT * FROM {} LIMIT %s').format(qualified(schema, table)), (limit,))
        names = [column.name for column in cursor.description or ()]
        rows = cursor.fetchall()
    conn.rollback()
    return names, rows
