"""View pipelines' SQL: checking the pieces a class supplies, rendering its where-clause
for a run, and creating the run's view.

`fields` expressions and the rendered where-clause are SQL written by the pipeline's
author; they are parsed with PostgreSQL's parser (pglast) and must be exactly one
expression (a field) or one condition (the where-clause), so nothing can be smuggled
after them. Aliases and names are quoted identifiers.
"""

import datetime
import logging

import jinja2
import pglast
import psycopg2
from psycopg2 import sql

from dataflow import constants, tables
from dataflow.errors import DataflowError
from dataflow.view_macros import TEMPLATE_HELPERS

log = logging.getLogger(__name__)

_TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


def _parse_select(statement, what):
    try:
        statements = pglast.parse_sql(statement)
    except pglast.parser.ParseError as exc:
        raise ValueError(f'PostgreSQL cannot parse {what}: {exc}') from None
    if len(statements) != 1:
        raise ValueError(f'{what} holds more than one SQL statement')
    return statements[0].stmt


def check_expression(expression):
    """One SQL expression (a view column), or ValueError."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f'expression must be a non-empty string, got {expression!r}')
    select = _parse_select(f'SELECT {expression} FROM t', f'expression {expression!r}')
    if len(select.targetList or ()) != 1 or len(select.fromClause or ()) != 1 or select.whereClause is not None:
        raise ValueError(f'{expression!r} is not a single SQL expression')


def check_where(rendered):
    """One SQL condition (a rendered where-clause), or ValueError."""
    select = _parse_select(f'SELECT 1 FROM t WHERE {rendered}', 'the rendered where_clause')
    if len(select.fromClause or ()) != 1 or select.groupClause or select.havingClause or select.sortClause \
            or select.limitCount is not None:
        raise ValueError('the rendered where_clause is not a single condition')


def check_where_template(template):
    if not isinstance(template, str):
        raise ValueError(f'must be a jinja template string, got {template!r}')
    try:
        _TEMPLATES.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f'jinja cannot parse it: {exc.message} (line {exc.lineno})') from None


def template_context(logical_date, data_interval_start=None, data_interval_end=None, params=None, macros=None):
    """What a where-clause can use: Airflow's names for the run, its macros, the class's
    params, and data-flow's date helpers (dataflow.view_macros)."""
    if macros is None:
        from airflow.sdk.execution_time import macros
    return {
        'ds': logical_date.strftime('%Y-%m-%d'),
        'ds_nodash': logical_date.strftime('%Y%m%d'),
        'logical_date': logical_date,
        'data_interval_start': data_interval_start or logical_date,
        'data_interval_end': data_interval_end or logical_date,
        'macros': macros,
        'params': params or {},
        **TEMPLATE_HELPERS,
    }


def render_where_clause(spec, context):
    """The spec's where-clause rendered for a run, checked to be one SQL condition; None
    when the class has none."""
    if not spec.where_clause or not spec.where_clause.strip():
        return None
    try:
        rendered = _TEMPLATES.from_string(spec.where_clause).render(**context)
    except jinja2.UndefinedError as exc:
        raise DataflowError(f'{spec.name}.where_clause: {exc.message}') from None
    except Exception as exc:  # noqa: BLE001 - a helper's own error, e.g. a bad FINANCIAL_YEAR_FIRST_MONTH_DAY
        raise DataflowError(f'{spec.name}.where_clause: {type(exc).__name__}: {exc}') from None
    # Written as a statement's ending in the classes data engineers copy from.
    rendered = rendered.strip().rstrip(';').strip()
    try:
        check_where(rendered)
    except ValueError as exc:
        raise DataflowError(f'{spec.name}.where_clause rendered to {rendered!r}: {exc}') from None
    return rendered


def view_name_for(spec, logical_date):
    """`view_name` + '_YYYY_MM_DD' of the run's logical date (the start of its interval),
    + '_HHMM' when that is not midnight."""
    suffix = logical_date.strftime('_%Y_%m_%d')
    if (logical_date.hour, logical_date.minute) != (0, 0):
        suffix += logical_date.strftime('_%H%M')
    return spec.view_name + suffix


def view_query(spec, where):
    def column(field):
        if field.is_column:
            return sql.Identifier(field.expression)
        # Parsed as exactly one SQL expression when the class was loaded.
        expression = sql.SQL(field.expression)
        return expression if field.alias is None else sql.SQL('{} AS {}').format(expression, sql.Identifier(field.alias))

    columns = sql.SQL(', ').join(column(f) for f in spec.fields)
    query = sql.SQL('SELECT {} FROM {}').format(columns, sql.Identifier(tables.DEFAULT_SCHEMA, spec.dataset.table_name))
    if where:
        # Parsed as exactly one condition after rendering (render_where_clause).
        query = sql.SQL('{} WHERE {}').format(query, sql.SQL(where))
    return query


def create_view_statement(name, spec, where):
    """CREATE VIEW statement of `spec`'s view `name`."""
    return sql.SQL('CREATE VIEW {} AS {}').format(sql.Identifier(tables.DEFAULT_SCHEMA, name), view_query(spec, where))


def create_view(conn, spec, name, where):
    """Create or replace view `name` for one run, in one transaction (committed).

    CREATE OR REPLACE keeps the view's grants and the views built on it; when the columns
    changed it cannot, so the view is dropped and created again with its grants restored.
    """
    if not tables.table_exists(conn, spec.dataset.table_name):
        raise DataflowError(f'{spec.name}: dataset table {tables.DEFAULT_SCHEMA}.{spec.dataset.table_name} '
                            f'does not exist yet (run {spec.dataset.name} first)')
    view = sql.Identifier(tables.DEFAULT_SCHEMA, name)
    query = view_query(spec, where)
    with conn.cursor() as cursor:
        cursor.execute('SET LOCAL lock_timeout = %s', (f'{constants.SWAP_LOCK_TIMEOUT_MS}ms',))
        cursor.execute('SAVEPOINT replace_view')
        try:
            cursor.execute(sql.SQL('CREATE OR REPLACE VIEW {} AS {}').format(view, query))
        except psycopg2.errors.InvalidTableDefinition:
            cursor.execute('ROLLBACK TO SAVEPOINT replace_view')
            cursor.execute('SELECT to_regclass(%s)::oid', (tables.regclass_text(tables.DEFAULT_SCHEMA, name),))
            grants = tables.grants_of(cursor, cursor.fetchone()[0])
            cursor.execute(sql.SQL('DROP VIEW {}').format(view))
            cursor.execute(create_view_statement(name, spec, where))
            tables.apply_grants(cursor, grants, tables.DEFAULT_SCHEMA, name)
            log.info('%s: the columns of %s changed; dropped and created it again', spec.name, name)
        except psycopg2.Error as exc:
            conn.rollback()
            raise DataflowError(f'{spec.name}: cannot create view {name}: {exc.diag.message_primary}') from None
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(view))
        rows = cursor.fetchone()[0]
    conn.commit()
    return rows


def logical_date_of(context):
    """The run's logical date, or a clear error for runs that have none."""
    logical_date = context.get('logical_date')
    if logical_date is None:
        raise DataflowError('view pipelines need a logical date: trigger the run with one '
                            '(runs triggered without a logical date have no interval)')
    return logical_date if isinstance(logical_date, datetime.datetime) else datetime.datetime.fromisoformat(str(logical_date))
