"""View pipelines' views in the datasets database: the query of a run's view, and its
creation (or replacement) in one transaction."""

from __future__ import annotations

import logging

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from dataflow import settings
from dataflow.definitions.views import ViewField, ViewPipelineSpec
from dataflow.errors import ViewError
from dataflow.load import catalog
from dataflow.load.catalog import DEFAULT_SCHEMA

log = logging.getLogger(__name__)


def _column(field: ViewField) -> sql.Composable:
    if field.is_column:
        return sql.Identifier(field.expression)
    # Parsed as exactly one SQL expression when the class was loaded.
    expression = sql.SQL(field.expression)
    return expression if field.alias is None else sql.SQL('{} AS {}').format(expression, sql.Identifier(field.alias))


def view_query(spec: ViewPipelineSpec, where: str | None) -> sql.Composed:
    columns = sql.SQL(', ').join(_column(f) for f in spec.fields)
    query = sql.SQL('SELECT {} FROM {}').format(columns, sql.Identifier(DEFAULT_SCHEMA, spec.dataset.table_name))
    if where:
        # Parsed as exactly one condition after rendering (render_where_clause).
        query = sql.SQL('{} WHERE {}').format(query, sql.SQL(where))
    return query


def create_view_statement(name: str, spec: ViewPipelineSpec, where: str | None) -> sql.Composed:
    """CREATE VIEW statement of `spec`'s view `name`."""
    return sql.SQL('CREATE VIEW {} AS {}').format(sql.Identifier(DEFAULT_SCHEMA, name), view_query(spec, where))


def create_view(conn: Connection, spec: ViewPipelineSpec, name: str, where: str | None,
                lock_timeout_ms: int | None = None) -> int:
    """Create or replace view `name` for one run, in one transaction (committed); its rows.

    CREATE OR REPLACE keeps the view's grants and the views built on it; when the columns
    changed it cannot, so the view is dropped and created again with its grants restored.
    """
    if not catalog.table_exists(conn, spec.dataset.table_name):
        raise ViewError(f'{spec.name}: dataset table {DEFAULT_SCHEMA}.{spec.dataset.table_name} '
                        f'does not exist yet (run {spec.dataset.name} first)')
    view = sql.Identifier(DEFAULT_SCHEMA, name)
    lock_timeout_ms = lock_timeout_ms or settings.current().swap_lock_timeout_ms
    with conn.cursor() as cursor:
        cursor.execute('SET LOCAL lock_timeout = %s', (f'{int(lock_timeout_ms)}ms',))
        cursor.execute('SAVEPOINT replace_view')
        try:
            cursor.execute(sql.SQL('CREATE OR REPLACE VIEW {} AS {}').format(view, view_query(spec, where)))
        except psycopg2.errors.InvalidTableDefinition:
            cursor.execute('ROLLBACK TO SAVEPOINT replace_view')
            oid = catalog.relation_oid(cursor, name)
            assert oid is not None  # CREATE OR REPLACE only fails this way on an existing view
            grants = catalog.grants_of(cursor, oid)
            cursor.execute(sql.SQL('DROP VIEW {}').format(view))
            cursor.execute(create_view_statement(name, spec, where))
            catalog.apply_grants(cursor, grants, DEFAULT_SCHEMA, name)
            log.info('%s: the columns of %s changed; dropped and created it again', spec.name, name)
        except psycopg2.Error as exc:
            conn.rollback()
            raise ViewError(f'{spec.name}: cannot create view {name}: {exc.diag.message_primary}') from None
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(view))
        rows = int(cursor.fetchone()[0])  # type: ignore[index]
    conn.commit()
    return rows
