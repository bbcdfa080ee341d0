"""What the Datasets pages show, gathered with one query per kind of fact (not one per
pipeline), so the list stays quick with hundreds of pipelines and a long load history.

Row counts are the load history's: a dataset table only changes when a load swaps it in,
so the last load's `rows_after` is its row count, without counting.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from dataflow.airflow.connections import connector_for
from dataflow.definitions.checks import Schedule
from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.definitions.discovery import Discovery, discover, discover_views, packages
from dataflow.definitions.views import ViewPipelineSpec
from dataflow.load import catalog

# How many loads the list's chart shows, and how many the dataset page lists.
CHART_LOADS = 20
HISTORY_LOADS = 50
PREVIEW_ROWS = 20
# Views listed per view pipeline (the latest intervals), and how long any one read may take.
VIEWS_LISTED = 24
STATEMENT_TIMEOUT_MS = 5000

_PRESETS = {'@hourly': '0 * * * *', '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@weekly': '0 0 * * 0',
            '@monthly': '0 0 1 * *', '@quarterly': '0 0 1 */3 *', '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *'}


@dataclass
class Pipelines:
    datasets: Discovery[DatasetPipelineSpec]
    views: Discovery[ViewPipelineSpec]


class _PipelineCache:
    """The discovered pipeline classes, found again only when a module of the pipelines
    package changed (the dag-processor picks up new classes without an api-server restart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[str, float], ...] | None = None
        self._pipelines: Pipelines | None = None

    def get(self) -> Pipelines:
        import importlib
        import sys

        searched = packages()
        folders = [folder for package in searched for folder in importlib.import_module(package).__path__]
        stamp = tuple(sorted((os.path.join(folder, name), os.stat(os.path.join(folder, name)).st_mtime)
                             for folder in folders for name in os.listdir(folder) if name.endswith('.py')))
        with self._lock:
            if stamp != self._stamp or self._pipelines is None:
                for name in [m for m in sys.modules if m.startswith(tuple(p + '.' for p in searched))]:
                    del sys.modules[name]  # so that changed modules are read again
                self._pipelines = Pipelines(discover(), discover_views())
                self._stamp = stamp
            return self._pipelines


pipelines = _PipelineCache()


@contextmanager
def reading(target_db: str) -> Iterator[Connection]:
    """A connection to a datasets database whose every transaction is read-only and whose
    every statement gives up after STATEMENT_TIMEOUT_MS."""
    conn = connector_for(target_db)()
    try:
        conn.set_session(readonly=True, autocommit=False)
        with conn.cursor() as cursor:
            cursor.execute('SET statement_timeout = %s', (f'{STATEMENT_TIMEOUT_MS}ms',))
        conn.commit()
        yield conn
    finally:
        conn.close()


def stale_after(schedule: Schedule, last: datetime.datetime) -> datetime.datetime | None:
    """When a dataset last swapped in at `last` becomes stale: when a second scheduled run
    after it is due (one missed run); None when its schedule runs it only when triggered."""
    if schedule is None:
        return None
    if isinstance(schedule, datetime.timedelta):
        return last + 2 * schedule
    expression = _PRESETS.get(schedule, schedule)
    if expression.startswith('@') or not croniter.is_valid(expression):
        return None
    times = croniter(expression, last)
    times.get_next(datetime.datetime)
    return times.get_next(datetime.datetime)  # type: ignore[no-any-return]


def age(when: datetime.datetime, now: datetime.datetime) -> str:
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (('day', 86400), ('hour', 3600), ('minute', 60)):
        if seconds >= size:
            count = seconds // size
            return f'{count} {unit}{"s" if count != 1 else ""} ago'
    return 'just now'


@dataclass
class Load:
    finished_at: datetime.datetime
    started_at: datetime.datetime
    rows_before: int | None
    rows_after: int
    lock_ms: float | None
    run_key: str
    warnings: list[str]
    new_fields: list[str]
    missing_fields: list[str]

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def _loads(conn: Connection, tables: Iterable[str], per_table: int) -> dict[str, list[Load]]:
    """The last `per_table` loads of each table, newest first."""
    tables = list(tables)
    found: dict[str, list[Load]] = defaultdict(list)
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('dataflow.load_history') IS NOT NULL")
        if not cursor.fetchone()[0]:  # type: ignore[index]
            conn.rollback()
            return found
        cursor.execute(
            """
            SELECT table_name, finished_at, started_at, rows_before, rows_after, lock_ms, run_key, warnings,
                   new_fields, missing_fields
            FROM (SELECT *, row_number() OVER (PARTITION BY table_name ORDER BY finished_at DESC) AS n
                  FROM dataflow.load_history WHERE table_name = ANY(%s)) recent
            WHERE n <= %s ORDER BY table_name, finished_at DESC
            """,
            (tables, per_table),
        )
        for table, *row in cursor.fetchall():
            found[table].append(Load(*row))
    conn.rollback()
    return found


@dataclass
class RunState:
    run_id: str
    state: str
    when: datetime.datetime | None


def last_runs(dag_ids: Iterable[str]) -> dict[str, RunState]:
    """The latest run of each DAG, from Airflow's metadata database (one query)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_ids = list(dag_ids)
    if not dag_ids:
        return {}
    with create_session() as session:
        rows = session.execute(
            select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_after)
            .where(DagRun.dag_id.in_(dag_ids))
            .distinct(DagRun.dag_id)
            .order_by(DagRun.dag_id, DagRun.run_after.desc())
        ).all()
    return {dag_id: RunState(run_id, str(state), run_after) for dag_id, run_id, state, run_after in rows}


@dataclass
class DatasetRow:
    spec: DatasetPipelineSpec
    loads: list[Load]                 # newest first
    run: RunState | None
    stale: bool
    age: str | None

    @property
    def last(self) -> Load | None:
        return self.loads[0] if self.loads else None

    @property
    def chart(self) -> list[int]:
        """Rows after each of the last loads, oldest first."""
        return [load.rows_after for load in reversed(self.loads)]

    @property
    def reports(self) -> list[str]:
        """The last load's quality warnings and schema-drift reports."""
        return list(self.last.warnings) if self.last else []


def dataset_rows(specs: Iterable[DatasetPipelineSpec], now: datetime.datetime) -> list[DatasetRow]:
    specs = sorted(specs, key=lambda s: s.name)
    by_db: dict[str, list[DatasetPipelineSpec]] = defaultdict(list)
    for spec in specs:
        by_db[spec.target_db].append(spec)
    loads: dict[tuple[str, str], list[Load]] = {}
    for target_db, group in by_db.items():
        with reading(target_db) as conn:
            for table, found in _loads(conn, {s.table_name for s in group}, CHART_LOADS).items():
                loads[(target_db, table)] = found
    runs = last_runs(s.name for s in specs)
    rows = []
    for spec in specs:
        found = loads.get((spec.target_db, spec.table_name), [])
        due = stale_after(spec.schedule, found[0].finished_at) if found else None
        rows.append(DatasetRow(spec, found, runs.get(spec.name), bool(due and now > due),
                               age(found[0].finished_at, now) if found else None))
    return rows


@dataclass
class DatasetPage:
    row: DatasetRow
    loads: list[Load]
    exists: bool
    views: list[str]                       # views on the table, as the catalog has them
    view_pipelines: list[ViewPipelineSpec]
    preview: tuple[list[str], list[tuple[Any, ...]]]


def dataset_page(spec: DatasetPipelineSpec, view_specs: Iterable[ViewPipelineSpec],
                 now: datetime.datetime) -> DatasetPage:
    [row] = dataset_rows([spec], now)
    with reading(spec.target_db) as conn:
        loads = _loads(conn, [spec.table_name], HISTORY_LOADS).get(spec.table_name, [])
        exists = catalog.table_exists(conn, spec.table_name)
        views: list[str] = []
        preview: tuple[list[str], list[tuple[Any, ...]]] = ([], [])
        if exists:
            with conn.cursor() as cursor:
                oid = catalog.relation_oid(cursor, spec.table_name)
                views = [f'{v[0]}.{v[1]}' for v in catalog.dependent_views(cursor, oid)] if oid else []
            conn.rollback()
            preview = catalog.preview(conn, spec.table_name, PREVIEW_ROWS, timeout_ms=STATEMENT_TIMEOUT_MS)
    return DatasetPage(row, loads, exists, views, [v for v in view_specs if v.dataset.name == spec.name], preview)


@dataclass
class View:
    name: str
    definition: str
    rows: int | None          # None: counting took longer than the statement timeout


@dataclass
class ViewPipelineRow:
    spec: ViewPipelineSpec
    views: list[View] = field(default_factory=list)


def _view_pattern(spec: ViewPipelineSpec) -> str:
    return '^' + re.escape(spec.view_name) + r'_\d{4}_\d{2}_\d{2}(_\d{4})?$'


def view_rows(specs: Iterable[ViewPipelineSpec]) -> list[ViewPipelineRow]:
    rows = []
    for spec in sorted(specs, key=lambda s: s.name):
        row = ViewPipelineRow(spec)
        with reading(spec.dataset.target_db) as conn, conn.cursor() as cursor:
            cursor.execute(
                """
                SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relkind = 'v' AND c.relname ~ %s
                ORDER BY c.relname DESC LIMIT %s
                """,
                (catalog.DEFAULT_SCHEMA, _view_pattern(spec), VIEWS_LISTED),
            )
            found = cursor.fetchall()
            for name, definition in found:
                cursor.execute('SAVEPOINT counting')
                try:
                    cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(
                        sql.Identifier(catalog.DEFAULT_SCHEMA, name)))
                    count: int | None = cursor.fetchone()[0]  # type: ignore[index]
                except Exception:  # noqa: BLE001 - a slow or broken view shows as unknown, the rest still show
                    cursor.execute('ROLLBACK TO SAVEPOINT counting')
                    count = None
                row.views.append(View(name, definition.strip(), count))
            conn.rollback()
        rows.append(row)
    return rows


def view_of(name: str, specs: Iterable[ViewPipelineSpec]) -> ViewPipelineSpec | None:
    """The view pipeline a view of that name belongs to, if any."""
    return next((s for s in specs if re.match(_view_pattern(s), name)), None)


def preview(target_db: str, relation: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The first rows of a dataset table or view (read-only, bounded in rows and time)."""
    with reading(target_db) as conn:
        if not catalog.table_exists(conn, relation):
            return [], []
        return catalog.preview(conn, relation, PREVIEW_ROWS, timeout_ms=STATEMENT_TIMEOUT_MS)
