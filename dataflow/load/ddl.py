"""Creating and dropping the tables a load writes, and the names data-flow gives them.
Nothing here commits: the caller decides the transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from dataflow.definitions.checks import MAX_IDENTIFIER_BYTES
from dataflow.definitions.fields import Column
from dataflow.load.catalog import DEFAULT_SCHEMA, qualified


def truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode('utf-8')[:max_bytes].decode('utf-8', 'ignore')


def derived_name(prefix: str, table: str, key: str) -> str:
    """`prefix` + 10 hex digits of `key` + '_' + table, cut to PostgreSQL's 63 bytes."""
    digest = hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]
    return truncate_utf8(f'{prefix}{digest}_{table}', MAX_IDENTIFIER_BYTES)


def column_definitions(columns: Iterable[Column]) -> sql.Composable:
    # Each column's type SQL was parsed as exactly one column type when the pipeline was
    # loaded (dataflow.definitions.columns), so it is safe to splice in.
    return sql.SQL(', ').join(
        sql.SQL('{} {}').format(sql.Identifier(c.name), sql.SQL(c.type.sql)) for c in columns
    )


def create_table(conn: Connection, table: str, columns: Iterable[Column], schema: str = DEFAULT_SCHEMA) -> None:
    """Create `table` with `columns` (not committed)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('CREATE TABLE {} ({})').format(qualified(schema, table), column_definitions(columns)))


def drop_table(conn: Connection, table: str, schema: str = DEFAULT_SCHEMA) -> None:
    """Drop `table` if it exists (not committed)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('DROP TABLE IF EXISTS {}').format(qualified(schema, table)))
