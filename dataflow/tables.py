"""Table operations on the datasets database: staging tables, COPY, and the swap.

A load never writes to the target table. It creates a staging table named for the run,
COPYs pages into it, and then `swap` puts it in place in one transaction: rename (constant
time whatever the size), re-point the views that read the target, keep the target's
grants and comment, drop the old table. Readers see the complete old table or the
complete new one. Functions take a psycopg2 connection; those that change data leave
committing to the caller unless they say otherwise.
"""

import hashlib
import io
import logging
import re
import time
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from dataflow import constants
from dataflow.errors import RecordError, SwapError
from dataflow.pipelines import MAX_IDENTIFIER_BYTES, RESERVED_TABLE_PREFIX

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = 'public'
STAGING_PREFIX = RESERVED_TABLE_PREFIX + 'stg_'
REPLACED_PREFIX = RESERVED_TABLE_PREFIX + 'old_'

_COPY_CONTEXT = re.compile(r'line (\d+)(?:, column ([^:]+))?')


def _truncate_utf8(text, max_bytes):
    encoded = text.encode('utf-8')[:max_bytes]
    return encoded.decode('utf-8', 'ignore')


def _derived_name(prefix, table, key):
    """`prefix` + 10 hex digits of `key` + '_' + table, cut to PostgreSQL's 63 bytes."""
    digest = hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]
    return _truncate_utf8(f'{prefix}{digest}_{table}', MAX_IDENTIFIER_BYTES)


def staging_table_name(table, run_id):
    """The staging table of `table` for one run: distinct for every (table, run)."""
    return _derived_name(STAGING_PREFIX, table, f'{table}\x00{run_id}')


def _qualified(schema, table):
    return sql.Identifier(schema, table)


def table_exists(conn, table, schema=DEFAULT_SCHEMA):
    with conn.cursor() as cursor:
        cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (regclass_text(schema, table),))
        return cursor.fetchone()[0]


def regclass_text(schema, table):
    # to_regclass parses its argument as SQL; quote both parts so any name round-trips.
    return '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


def row_count(conn, table, schema=DEFAULT_SCHEMA):
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(_qualified(schema, table)))
        return cursor.fetchone()[0]


def preview(conn, table, limit, schema=DEFAULT_SCHEMA, timeout_ms=10000):
    """(column names, first `limit` rows) of a table, read in a read-only transaction with
    a statement timeout: a preview can neither change data nor hold the database up."""
    with conn.cursor() as cursor:
        cursor.execute('SET TRANSACTION READ ONLY')
        cursor.execute('SET LOCAL statement_timeout = %s', (f'{int(timeout_ms)}ms',))
        cursor.execute(sql.SQL('SELECT * FROM {} LIMIT %s').format(_qualified(schema, table)), (limit,))
        names = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    conn.rollback()
    return names, rows


def column_definitions(columns):
    # Each column's type SQL was parsed as exactly one column type by
    # dataflow.column_types when the pipeline was loaded, so it is safe to splice in.
    return sql.SQL(', ').join(
        sql.SQL('{} {}').format(sql.Identifier(c.name), sql.SQL(c.type.sql)) for c in columns
    )


def create_table(conn, table, columns, schema=DEFAULT_SCHEMA):
    """Create `table` with `columns` (not committed)."""
    with conn.cursor() as cursor:
        cursor.execute(
            sql.SQL('CREATE TABLE {} ({})').format(_qualified(schema, table), column_definitions(columns))
        )


def drop_table(conn, table, schema=DEFAULT_SCHEMA):
    """Drop `table` if it exists (not committed)."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('DROP TABLE IF EXISTS {}').format(_qualified(schema, table)))


def copy_statement(table, columns, schema=DEFAULT_SCHEMA):
    return sql.SQL('COPY {} ({}) FROM STDIN').format(
        _qualified(schema, table), sql.SQL(', ').join(sql.Identifier(c.name) for c in columns)
    )


def copy_page(cursor, table, renderer, records, page, schema=DEFAULT_SCHEMA):
    """COPY one page of `records` into `table` in the cursor's transaction (not committed).

    Raises RecordError naming the page, the record and the field for a value the
    renderer or PostgreSQL refuses. Returns the number of rows copied.
    """
    copy_payload(cursor, table, renderer, renderer.render(records, page), page, schema)
    return len(records)


def copy_payload(cursor, table, renderer, payload, page, schema=DEFAULT_SCHEMA):
    """COPY a page rendered by `renderer` (COPY text) into `table` (not committed).
    A value PostgreSQL refuses raises RecordError naming the page, record and field."""
    if not payload:
        return
    try:
        cursor.copy_expert(copy_statement(table, renderer.columns, schema), io.BytesIO(payload))
    except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
        raise _record_error(exc, renderer, payload, page) from None


def _record_error(exc, renderer, payload, page):
    diag = exc.diag
    problem = diag.message_primary or str(exc).strip()
    if diag.message_detail:
        problem += f' ({diag.message_detail})'
    match = _COPY_CONTEXT.search(diag.context or '')
    if not match:
        return RecordError(page, '(unknown)', None, problem, exc.pgcode)
    record_key = renderer.describe_line(payload, int(match.group(1)))
    column_name = match.group(2)
    field = None
    if column_name:
        column = next((c for c in renderer.columns if c.name == column_name), None)
        field = f'{column.source_field} (column {column_name})' if column else f'column {column_name}'
    return RecordError(page, record_key, field, problem, exc.pgcode)


@dataclass(frozen=True)
class SwapResult:
    table: str
    rows_before: int | None   # None: there was no target table
    rows_after: int
    views_repointed: tuple
    lock_seconds: float       # how long the target was locked against readers


def _dependent_views(cursor, relation_oid):
    """Views that read the relation directly: (schema, name, relkind, definition, options)."""
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
        (relation_oid, relation_oid),
    )
    return cursor.fetchall()


def grants_of(cursor, relation_oid):
    """(privilege, grantee role or None for PUBLIC, grantable) of the relation's ACL."""
    cursor.execute(
        """
        SELECT a.privilege_type,
               CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
               a.is_grantable
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = %s
        """,
        (relation_oid,),
    )
    return cursor.fetchall()


def apply_grants(cursor, grants, schema, table):
    for privilege, grantee, grantable in grants:
        cursor.execute(
            sql.SQL('GRANT {} ON TABLE {} TO {}{}').format(
                sql.SQL(privilege),  # from aclexplode: a fixed set of keywords
                _qualified(schema, table),
                sql.SQL('PUBLIC') if grantee is None else sql.Identifier(grantee),
                sql.SQL(' WITH GRANT OPTION') if grantable else sql.SQL(''),
            )
        )


def _rename_derived_names(cursor, relation_oid, schema, staging, table):
    """Give the new table's constraints and indexes the target's names (omis_dataset_pkey,
    not _df_stg_…_omis_dataset_pkey). Renaming a constraint that an index backs renames
    the index too, so the indexes are looked at after the constraints."""

    def target_name(name):
        if not name.startswith(staging):
            return None
        new_name = table + name[len(staging):]
        if len(new_name.encode('utf-8')) > MAX_IDENTIFIER_BYTES or _relation_named(cursor, schema, new_name):
            return None
        return new_name

    cursor.execute('SELECT conname FROM pg_constraint WHERE conrelid = %s', (relation_oid,))
    for (name,) in cursor.fetchall():
        if new_name := target_name(name):
            cursor.execute(sql.SQL('ALTER TABLE {} RENAME CONSTRAINT {} TO {}').format(
                _qualified(schema, table), sql.Identifier(name), sql.Identifier(new_name)))
    cursor.execute(
        'SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s',
        (relation_oid,),
    )
    for (name,) in cursor.fetchall():
        if new_name := target_name(name):
            cursor.execute(sql.SQL('ALTER INDEX {} RENAME TO {}').format(
                _qualified(schema, name), sql.Identifier(new_name)))


def _relation_named(cursor, schema, name):
    cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (regclass_text(schema, name),))
    return cursor.fetchone()[0]


def swap(conn, staging, table, schema=DEFAULT_SCHEMA, lock_timeout_ms=None, attempts=None, before_commit=None,
         counts=None):
    """Put `staging` in place of `table`, in one transaction, and commit.

    Views that read `table` are re-pointed to the new table with CREATE OR REPLACE VIEW,
    which keeps their own grants, owners and the views built on them. The old table's
    grants and comment carry over. If the lock cannot be had within `lock_timeout_ms`
    (readers hold it) the attempt is rolled back and retried, `attempts` times in all.
    On any failure the transaction is rolled back: `table` is as it was and `staging`
    is left for the caller to drop. `before_commit(cursor)`, if given, runs inside the
    swap's transaction, to record the swap atomically with it. `counts` is (rows in the
    target or None, rows in staging) when the caller has counted them already.
    """
    lock_timeout_ms = lock_timeout_ms or constants.SWAP_LOCK_TIMEOUT_MS
    attempts = attempts or constants.SWAP_ATTEMPTS
    conn.rollback()
    if counts is None:
        # Counted before the lock: only this run writes either table (max_active_runs=1).
        rows_after = row_count(conn, staging, schema)
        rows_before = row_count(conn, table, schema) if table_exists(conn, table, schema) else None
        conn.rollback()
    else:
        rows_before, rows_after = counts
    for attempt in range(1, attempts + 1):
        try:
            result = _swap_once(conn, staging, table, schema, lock_timeout_ms, before_commit)
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected, _DependentsChanged) as exc:
            conn.rollback()
            log.warning('Swap of %s: could not take its locks (%s; attempt %d of %d)',
                        table, _lock_problem(exc, lock_timeout_ms), attempt, attempts)
            time.sleep(min(5.0, 0.2 * 2 ** attempt))
            continue
        except SwapError:
            conn.rollback()
            raise
        except psycopg2.Error as exc:
            conn.rollback()
            raise SwapError(f'swap of {schema}.{table} failed, target unchanged: {str(exc).strip()}',
                            exc.pgcode) from None
        return SwapResult(table, rows_before, rows_after, *result)
    raise SwapError(f'swap of {schema}.{table}: could not lock it in {attempts} attempts; target unchanged')


def _lock_problem(exc, lock_timeout_ms):
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        return f'readers held it for over {lock_timeout_ms} ms'
    if isinstance(exc, _DependentsChanged):
        return 'views on it changed meanwhile'
    return 'deadlock with a reader'


class _DependentsChanged(Exception):
    """A view on the target was created or dropped while the swap took its locks."""


def _lock(cursor, schema, name):
    cursor.execute(sql.SQL('LOCK TABLE {} IN ACCESS EXCLUSIVE MODE').format(_qualified(schema, name)))


def _swap_once(conn, staging, table, schema, lock_timeout_ms, before_commit):
    with conn.cursor() as cursor:
        cursor.execute('SET LOCAL lock_timeout = %s', (f'{int(lock_timeout_ms)}ms',))
        _lock(cursor, schema, staging)
        cursor.execute('SELECT to_regclass(%s)::oid', (regclass_text(schema, table),))
        old_oid = cursor.fetchone()[0]
        views, grants, comment = (), (), None
        if old_oid is not None:
            # Readers of a view lock the view before the table under it; take the locks
            # in that order too, or a reader and the swap can deadlock.
            views = _dependent_views(cursor, old_oid)
            materialized = [f'{v[0]}.{v[1]}' for v in views if v[2] == 'm']
            if materialized:
                raise SwapError(
                    f'swap of {schema}.{table}: materialized views read it ({", ".join(materialized)}); '
                    'drop them or turn them into views; target unchanged'
                )
            for view_schema, view_name, *_ in views:
                _lock(cursor, view_schema, view_name)
            _lock(cursor, schema, table)
            if _dependent_views(cursor, old_oid) != views:
                raise _DependentsChanged()
        locked_at = time.perf_counter()
        if old_oid is not None:
            grants = grants_of(cursor, old_oid)
            cursor.execute("SELECT obj_description(%s, 'pg_class')", (old_oid,))
            comment = cursor.fetchone()[0]
            replaced = _derived_name(REPLACED_PREFIX, table, staging)
            cursor.execute(
                sql.SQL('ALTER TABLE {} RENAME TO {}').format(_qualified(schema, table), sql.Identifier(replaced))
            )
        cursor.execute(
            sql.SQL('ALTER TABLE {} RENAME TO {}').format(_qualified(schema, staging), sql.Identifier(table))
        )
        apply_grants(cursor, grants, schema, table)
        if comment is not None:
            cursor.execute(
                sql.SQL('COMMENT ON TABLE {} IS %s').format(_qualified(schema, table)), (comment,)
            )
        for view_schema, view_name, _, definition, options in views:
            # The definition is PostgreSQL's own text of the view (pg_get_viewdef, taken
            # before the rename), so its reference to the target now finds the new table.
            statement = sql.SQL('CREATE OR REPLACE VIEW {}{} AS {}').format(
                _qualified(view_schema, view_name),
                sql.SQL(' WITH ({})').format(sql.SQL(', ').join(map(sql.SQL, options))) if options else sql.SQL(''),
                sql.SQL(definition.rstrip().rstrip(';')),
            )
            try:
                cursor.execute(statement)
            except psycopg2.Error as exc:
                raise SwapError(
                    f'swap of {schema}.{table} failed, target unchanged: view {view_schema}.{view_name} '
                    f'cannot read the new table: {exc.diag.message_primary}', exc.pgcode
                ) from None
        if old_oid is not None:
            cursor.execute(sql.SQL('DROP TABLE {}').format(_qualified(schema, replaced)))
        cursor.execute('SELECT to_regclass(%s)::oid', (regclass_text(schema, table),))
        _rename_derived_names(cursor, cursor.fetchone()[0], schema, staging, table)
        if before_commit is not None:
            before_commit(cursor)
    conn.commit()
    lock_seconds = time.perf_counter() - locked_at
    return tuple(f'{v[0]}.{v[1]}' for v in views), lock_seconds
