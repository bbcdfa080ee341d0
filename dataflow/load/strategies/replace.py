"""The replace strategy: a load never writes to the target table. It creates a staging
table named for the run, COPYs pages into it, and then `swap` puts it in place in one
transaction: rename (constant time whatever the size), re-point the views that read the
target, keep the target's grants and comment, drop the old table. Readers see the
complete old table or the complete new one, never an empty or partial one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from dataflow import settings
from dataflow.definitions.checks import MAX_IDENTIFIER_BYTES, RESERVED_TABLE_PREFIX
from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.errors import RunNotSwapped, SwapError
from dataflow.load import catalog, quality
from dataflow.load.catalog import DEFAULT_SCHEMA, DependentView, qualified
from dataflow.load.connection import connection_lost
from dataflow.load.copy import Pages, RecordRenderer, copy_payload
from dataflow.load.ddl import create_table, derived_name, drop_table
from dataflow.load.strategies import Published, Record

log = logging.getLogger(__name__)

STAGING_PREFIX = RESERVED_TABLE_PREFIX + 'stg_'
REPLACED_PREFIX = RESERVED_TABLE_PREFIX + 'old_'


def staging_table_name(table: str, run_key: str) -> str:
    """The staging table of `table` for one run: distinct for every (table, run)."""
    return derived_name(STAGING_PREFIX, table, f'{table}\x00{run_key}')


class ReplaceStrategy:
    """Staging table + atomic swap (see the module's docstring); `lock_timeout_ms` and
    `attempts` bound how long the swap waits for readers' locks."""

    def __init__(self, lock_timeout_ms: int | None = None, attempts: int | None = None) -> None:
        self.lock_timeout_ms = lock_timeout_ms or settings.current().swap_lock_timeout_ms
        self.attempts = attempts or settings.current().swap_attempts

    def __repr__(self) -> str:
        return f'ReplaceStrategy(lock_timeout_ms={self.lock_timeout_ms}, attempts={self.attempts})'

    def staging_name(self, spec: DatasetPipelineSpec, run_key: str) -> str:
        return staging_table_name(spec.table_name, run_key)

    def prepare(self, conn: Connection, spec: DatasetPipelineSpec, run_key: str) -> str:
        staging = staging_table_name(spec.table_name, run_key)
        drop_table(conn, staging)
        create_table(conn, staging, spec.columns)
        conn.commit()
        return staging

    def load(self, cursor: Cursor, spec: DatasetPipelineSpec, run_key: str, renderer: RecordRenderer,
             payload: bytes, pages: Pages) -> None:
        copy_payload(cursor, staging_table_name(spec.table_name, run_key), renderer, payload, pages)

    def publish(self, conn: Connection, spec: DatasetPipelineSpec, run_key: str, expected_rows: int,
                record: Record) -> Published:
        staging = staging_table_name(spec.table_name, run_key)
        gates = quality.check(conn, spec, staging)
        if gates.rows_after != expected_rows:
            raise RunNotSwapped(f'{spec.name}: staging has {gates.rows_after} rows, fetch stored {expected_rows}')
        result = swap(conn, staging, spec.table_name, lock_timeout_ms=self.lock_timeout_ms, attempts=self.attempts,
                      before_commit=lambda cursor: record(cursor, gates.rows_before, gates.rows_after, gates.warnings),
                      counts=(gates.rows_before, gates.rows_after))
        return Published(spec.table_name, result.rows_before, result.rows_after, result.views_repointed,
                         result.lock_seconds, gates.warnings)

    def discard(self, conn: Connection, spec: DatasetPipelineSpec, run_key: str) -> None:
        drop_table(conn, staging_table_name(spec.table_name, run_key))
        conn.commit()


@dataclass(frozen=True)
class SwapResult:
    table: str
    rows_before: int | None   # None: there was no target table
    rows_after: int
    views_repointed: tuple[str, ...]
    lock_seconds: float       # how long the target was locked against readers


def _rename_derived_names(cursor: Cursor, oid: int, schema: str, staging: str, table: str) -> None:
    """Give the new table's constraints and indexes the target's names (omis_dataset_pkey,
    not _df_stg_…_omis_dataset_pkey). Renaming a constraint that an index backs renames
    the index too, so the indexes are looked at after the constraints."""

    def target_name(name: str) -> str | None:
        if not name.startswith(staging):
            return None
        new_name = table + name[len(staging):]
        if len(new_name.encode('utf-8')) > MAX_IDENTIFIER_BYTES or catalog.relation_exists(cursor, new_name, schema):
            return None
        return new_name

    cursor.execute('SELECT conname FROM pg_constraint WHERE conrelid = %s', (oid,))
    for (name,) in cursor.fetchall():
        if new_name := target_name(name):
            cursor.execute(sql.SQL('ALTER TABLE {} RENAME CONSTRAINT {} TO {}').format(
                qualified(schema, table), sql.Identifier(name), sql.Identifier(new_name)))
    cursor.execute('SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s',
                   (oid,))
    for (name,) in cursor.fetchall():
        if new_name := target_name(name):
            cursor.execute(sql.SQL('ALTER INDEX {} RENAME TO {}').format(qualified(schema, name),
                                                                          sql.Identifier(new_name)))


def swap(conn: Connection, staging: str, table: str, schema: str = DEFAULT_SCHEMA, lock_timeout_ms: int | None = None,
         attempts: int | None = None, before_commit: Callable[[Cursor], None] | None = None,
         counts: tuple[int | None, int] | None = None) -> SwapResult:
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
    lock_timeout_ms = lock_timeout_ms or settings.current().swap_lock_timeout_ms
    attempts = attempts or settings.current().swap_attempts
    conn.rollback()
    if counts is None:
        # Counted before the lock: only this run writes either table (max_active_runs=1).
        rows_after = catalog.row_count(conn, staging, schema)
        rows_before = catalog.row_count(conn, table, schema) if catalog.table_exists(conn, table, schema) else None
        conn.rollback()
    else:
        rows_before, rows_after = counts
    for attempt in range(1, attempts + 1):
        try:
            views, lock_seconds = _swap_once(conn, staging, table, schema, lock_timeout_ms, before_commit)
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.DeadlockDetected, _DependentsChanged) as exc:
            conn.rollback()
            log.warning('Swap of %s: could not take its locks (%s; attempt %d of %d)',
                        table, _lock_problem(exc, lock_timeout_ms), attempt, attempts)
            time.sleep(min(5.0, 0.2 * 2 ** attempt))
            continue
        except SwapError:
            _rollback_quietly(conn)
            raise
        except psycopg2.Error as exc:
            _rollback_quietly(conn)
            if connection_lost(exc):
                # Lost at COMMIT, the swap may have happened: the ledger, committed with it,
                # tells the next try (publish is idempotent).
                raise SwapError(f'swap of {schema}.{table}: lost the database connection '
                                f'({str(exc).strip() or type(exc).__name__}); the ledger says at the next try '
                                'whether it committed', exc.pgcode) from None
            raise SwapError(f'swap of {schema}.{table} failed, target unchanged: {str(exc).strip()}',
                            exc.pgcode) from None
        return SwapResult(table, rows_before, rows_after, views, lock_seconds)
    raise SwapError(f'swap of {schema}.{table}: could not lock it in {attempts} attempts; target unchanged')


def _rollback_quietly(conn: Connection) -> None:
    """Roll back, unless the connection is gone (the server rolled it back then); the
    error that brought us here is the one to report."""
    try:
        conn.rollback()
    except psycopg2.Error as exc:
        if not connection_lost(exc):
            raise


def _lock_problem(exc: Exception, lock_timeout_ms: int) -> str:
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        return f'readers held it for over {lock_timeout_ms} ms'
    if isinstance(exc, _DependentsChanged):
        return 'views on it changed meanwhile'
    return 'deadlock with a reader'


class _DependentsChanged(Exception):
    """A view on the target was created or dropped while the swap took its locks."""


def _lock(cursor: Cursor, schema: str, name: str) -> None:
    cursor.execute(sql.SQL('LOCK TABLE {} IN ACCESS EXCLUSIVE MODE').format(qualified(schema, name)))


def _swap_once(conn: Connection, staging: str, table: str, schema: str, lock_timeout_ms: int,
               before_commit: Callable[[Cursor], None] | None) -> tuple[tuple[str, ...], float]:
    with conn.cursor() as cursor:
        cursor.execute('SET LOCAL lock_timeout = %s', (f'{int(lock_timeout_ms)}ms',))
        _lock(cursor, schema, staging)
        old_oid = catalog.relation_oid(cursor, table, schema)
        views: list[DependentView] = []
        grants: list[catalog.Grant] = []
        comment = None
        if old_oid is not None:
            # Readers of a view lock the view before the table under it; take the locks
            # in that order too, or a reader and the swap can deadlock.
            views = catalog.dependent_views(cursor, old_oid)
            materialized = [f'{v[0]}.{v[1]}' for v in views if v[2] == 'm']
            if materialized:
                raise SwapError(
                    f'swap of {schema}.{table}: materialized views read it ({", ".join(materialized)}); '
                    'drop them or turn them into views; target unchanged'
                )
            for view_schema, view_name, *_ in views:
                _lock(cursor, view_schema, view_name)
            _lock(cursor, schema, table)
            if catalog.dependent_views(cursor, old_oid) != views:
                raise _DependentsChanged()
        locked_at = time.perf_counter()
        if old_oid is not None:
            grants = catalog.grants_of(cursor, old_oid)
            cursor.execute("SELECT obj_description(%s, 'pg_class')", (old_oid,))
            comment = cursor.fetchone()[0]  # type: ignore[index]
            replaced = derived_name(REPLACED_PREFIX, table, staging)
            cursor.execute(sql.SQL('ALTER TABLE {} RENAME TO {}').format(qualified(schema, table),
                                                                         sql.Identifier(replaced)))
        cursor.execute(sql.SQL('ALTER TABLE {} RENAME TO {}').format(qualified(schema, staging), sql.Identifier(table)))
        catalog.apply_grants(cursor, grants, schema, table)
        if comment is not None:
            cursor.execute(sql.SQL('COMMENT ON TABLE {} IS %s').format(qualified(schema, table)), (comment,))
        for view_schema, view_name, _, definition, options in views:
            # The definition is PostgreSQL's own text of the view (pg_get_viewdef, taken
            # before the rename), so its reference to the target now finds the new table.
            statement = sql.SQL('CREATE OR REPLACE VIEW {}{} AS {}').format(
                qualified(view_schema, view_name),
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
            cursor.execute(sql.SQL('DROP TABLE {}').format(qualified(schema, replaced)))
        new_oid = catalog.relation_oid(cursor, table, schema)
        assert new_oid is not None  # renamed into place just above
        _rename_derived_names(cursor, new_oid, schema, staging, table)
        if before_commit is not None:
            before_commit(cursor)
    conn.commit()
    lock_seconds = time.perf_counter() - locked_at
    return tuple(f'{v[0]}.{v[1]}' for v in views), lock_seconds
