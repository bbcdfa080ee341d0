"""The `dataflow` command.

    dataflow check [--dsn DSN | --no-database]      validate every pipeline class; exit 1 on any problem
    dataflow list [--dsn DSN]                       pipelines, schedules, targets and last loads
    dataflow show PIPELINE [--rows N] [--dsn DSN]   a dataset's columns, row count, last load, first rows
    dataflow run PIPELINE [--dsn DSN]               run a dataset pipeline once, in this process, reading its
                                                    source connection as a task would (HAWK_ID, HAWK_KEY and
                                                    DATAHUB_BASE_URL for the default `datahub`)

The datasets database is, in this order: --dsn; the `datasets_db` Airflow connection
(AIRFLOW_CONN_DATASETS_DB); the database a demo run recorded (dataflow.load.localdb), its
embedded server started for the command when the demo has stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

import psycopg2
from psycopg2.extensions import connection as Connection

from dataflow import settings
from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.definitions.discovery import discover, discover_views
from dataflow.definitions.templates import render_where_clause, template_context
from dataflow.definitions.views import ViewPipelineSpec
from dataflow.errors import DataflowError, DefinitionError, RunFailed
from dataflow.load import catalog, localdb
from dataflow.load.connection import Connect, connector
from dataflow.load.ddl import create_table
from dataflow.load.strategies.replace import ReplaceStrategy, staging_table_name
from dataflow.load.views import create_view_statement
from dataflow.runs import ledger, local
from dataflow.runs.pagestore import MemoryPageStore
from dataflow.runs.steps import Ports
from dataflow.sources.connection import source_for

OK, FAILED = 'ok', 'FAILED'


class NoDatabase(DataflowError):
    """No datasets database was given, configured or recorded."""


@contextlib.contextmanager
def _connector(args: argparse.Namespace) -> Iterator[Connect]:
    """The datasets database (see the module's docstring), for as long as it is needed."""
    if args.dsn:
        yield connector(args.dsn)
    elif settings.current().airflow_conn_datasets_db:
        from dataflow.airflow.connections import connector_for  # loads Airflow: only when needed

        yield connector_for('datasets_db')
    else:
        with localdb.recorded_database() as dsn:
            if dsn is None:
                raise NoDatabase('no datasets database: pass --dsn, set AIRFLOW_CONN_DATASETS_DB, or run bin/demo')
            yield connector(dsn)


@contextlib.contextmanager
def _connection(args: argparse.Namespace) -> Iterator[Connection]:
    with _connector(args) as connect:
        conn = connect()
        try:
            yield conn
        finally:
            conn.close()


def _database_problems(conn: Connection, dataset_specs: Sequence[DatasetPipelineSpec],
                       view_specs: Sequence[ViewPipelineSpec]) -> dict[str, list[str]]:
    """{pipeline name: [problem]} from PostgreSQL itself, in transactions rolled back."""
    problems: dict[str, list[str]] = {}
    for spec in dataset_specs:
        try:
            create_table(conn, staging_table_name(spec.table_name, 'dataflow-check'), spec.columns)
        except psycopg2.Error as exc:
            problems.setdefault(spec.name, []).append(f'field_mapping: PostgreSQL refuses the table: '
                                                      f'{exc.diag.message_primary}')
        finally:
            conn.rollback()
    if view_specs:
        from dataflow.airflow.templates import airflow_macros  # loads Airflow: only when there are views

        macros = airflow_macros()
    for view in view_specs:
        try:
            where = render_where_clause(view, template_context(view.start_date, macros, params=view.params))
            if not catalog.table_exists(conn, view.dataset.table_name):
                create_table(conn, view.dataset.table_name, view.dataset.columns)
            with conn.cursor() as cursor:
                cursor.execute(create_view_statement(f'_df_check_{view.view_name}', view, where))
        except DataflowError as exc:
            problems.setdefault(view.name, []).append(str(exc))
        except psycopg2.Error as exc:
            problems.setdefault(view.name, []).append(f'PostgreSQL refuses the view: {exc.diag.message_primary}')
        finally:
            conn.rollback()
    return problems


def _indented(text: str, indent: str = '    ') -> str:
    """A problem under its pipeline's name: continuation lines (a caret under a column
    type) keep their place under the first line."""
    return '\n'.join(indent + line for line in text.splitlines())


def check(args: argparse.Namespace, out: TextIO) -> int:
    datasets, view_pipelines = discover(package=args.package), discover_views(package=args.package)
    problems: dict[str, list[str]] = {}
    for name, error in {**datasets.errors, **view_pipelines.errors}.items():
        problems[name] = [f'{a}: {p}' for a, p in error.problems] if isinstance(error, DefinitionError) else [
            f'does not import: {type(error).__name__}: {error}']
    notes = []
    if args.no_database:
        notes.append('PostgreSQL was not asked (--no-database)')
    else:
        try:
            with _connection(args) as conn:
                for name, found in _database_problems(conn, list(datasets.specs.values()),
                                                      list(view_pipelines.specs.values())).items():
                    problems.setdefault(name, []).extend(found)
        except (psycopg2.Error, DataflowError) as exc:
            print(f'Cannot reach the datasets database to check column types and views: {exc}'.strip(), file=out)
            print('Pass --dsn, set AIRFLOW_CONN_DATASETS_DB, or --no-database to skip those checks.', file=out)
            return 2
    names = sorted({*datasets.specs, *view_pipelines.specs, *problems})
    width = max((len(n) for n in names), default=10) + 2
    for name in names:
        print(f'{name:{width}}{FAILED if name in problems else OK}', file=out)
        for problem in problems.get(name, ()):
            print(_indented(problem), file=out)
    failed = len(problems)
    print(f'\n{len(names)} pipelines: {len(names) - failed} ok, {failed} failed'
          + ''.join(f'; {note}' for note in notes), file=out)
    return 1 if failed else 0


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)


def list_pipelines(args: argparse.Namespace, out: TextIO) -> int:
    datasets, view_pipelines = discover(package=args.package), discover_views(package=args.package)
    loads = None
    try:
        with _connection(args) as conn:
            loads = ledger.last_loads(conn)
    except (psycopg2.Error, DataflowError) as exc:
        print(f'(last loads unknown: {str(exc).strip()})', file=out)
    rows = [('PIPELINE', 'KIND', 'SCHEDULE', 'TARGET', 'LAST LOAD')]
    for spec in datasets.specs.values():
        last = None if loads is None else loads.get(spec.table_name)
        when = 'unknown' if loads is None else f'{last[0]:%Y-%m-%d %H:%M} UTC, {last[1]} rows' if last else 'never'
        rows.append((spec.name, 'dataset', str(spec.schedule), f'{spec.target_db}: {spec.table_name}', when))
    for view in view_pipelines.specs.values():
        rows.append((view.name, 'view', str(view.schedule), f'{view.dataset.target_db}: {view.view_name}_YYYY_MM_DD',
                     '-'))
    for name in {**datasets.errors, **view_pipelines.errors}:
        rows.append((name, 'INVALID', '-', '-', 'run `dataflow check`'))
    _table(rows, out)
    return 0


def _dataset(args: argparse.Namespace, out: TextIO) -> DatasetPipelineSpec | None:
    """The dataset pipeline the command names, or None having said why not."""
    datasets = discover(package=args.package)
    spec = datasets.specs.get(args.pipeline)
    if spec is None:
        if args.pipeline in datasets.errors:
            print(f'{args.pipeline} is not valid: {datasets.errors[args.pipeline]}', file=out)
        else:
            print(f'No dataset pipeline {args.pipeline!r}; there are: {", ".join(sorted(datasets.specs))}', file=out)
    return spec


def _cell(value: object) -> str:
    text = 'NULL' if value is None else str(value)
    return text if len(text) <= 80 else text[:79] + '…'


def show(args: argparse.Namespace, out: TextIO) -> int:
    spec = _dataset(args, out)
    if spec is None:
        return 1
    try:
        with _connection(args) as conn:
            exists = catalog.table_exists(conn, spec.table_name)
            count = catalog.row_count(conn, spec.table_name) if exists else 0
            last = ledger.last_loads(conn).get(spec.table_name)
            names, rows = catalog.preview(conn, spec.table_name, args.rows) if exists else ([], [])
    except (psycopg2.Error, DataflowError) as exc:
        print(f'Cannot read the datasets database: {str(exc).strip()}', file=out)
        return 2
    print(f'{spec.name}: {spec.source} -> {catalog.DEFAULT_SCHEMA}.{spec.table_name}', file=out)
    if not exists:
        print('The table does not exist yet: the pipeline has not loaded it.', file=out)
    else:
        loaded = f'last loaded {last[0]:%Y-%m-%d %H:%M} UTC' if last else 'no load recorded'
        print(f'{count:,} rows; {loaded}\n', file=out)
    _table([('COLUMN', 'TYPE', 'SOURCE FIELD')] + [(c.name, c.type.sql, c.source_field) for c in spec.columns], out)
    for number, row in enumerate(rows, 1):
        print(f'\n-[ row {number} ]', file=out)
        width = max(map(len, names))
        for name, value in zip(names, row):
            print(f'{name:{width}} | {_cell(value)}', file=out)
    return 0


def run(args: argparse.Namespace, out: TextIO) -> int:
    spec = _dataset(args, out)
    if spec is None:
        return 1
    config = settings.current()
    on_terminal = out.isatty()

    def progress(found: ledger.Progress, seconds: float) -> None:
        line = f'{found.describe()}; {found.rows_loaded / seconds if seconds else 0:,.0f} rows/s'
        print(f'\r{line}\033[K', end='', file=out, flush=True)

    try:
        from dataflow.airflow.connections import source_connection  # loads Airflow: connections may be its

        source = source_for(source_connection(spec.source_conn_id), config)
        with _connector(args) as connect:
            ports = Ports(connect, source, MemoryPageStore(), ReplaceStrategy())
            result = local.run(spec, ports, ingest_threads=args.ingest_threads,
                               progress=progress if on_terminal else None)
    except (RunFailed, DataflowError, psycopg2.Error) as exc:
        print(('\n' if on_terminal else '') + f'{spec.name} failed: {str(exc).strip()}', file=out)
        return 1
    published = result.published
    print(('\n' if on_terminal else '') +
          f'{spec.name}: loaded {result.rows:,} rows in {result.pages} pages in {result.seconds:.1f} s '
          f'({result.rows / result.seconds if result.seconds else 0:,.0f} rows/s); {spec.table_name}: '
          f'{"no table" if published["rows_before"] is None else published["rows_before"]} -> '
          f'{published["rows_after"]} rows', file=out)
    return 0


COMMANDS = {
    'check': (check, 'validate every pipeline class'),
    'list': (list_pipelines, 'list pipelines and last loads'),
    'show': (show, "a dataset's columns, row count, last load and first rows"),
    'run': (run, 'run a dataset pipeline once, in this process (as Airflow would, without Airflow)'),
}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog='dataflow', description='data-flow pipelines')
    commands = parser.add_subparsers(dest='command', required=True)
    for name, (_, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        command.add_argument('--dsn', help='the datasets database (default: the datasets_db Airflow connection, '
                                           'else the demo\'s)')
        command.add_argument('--package', default=None, help=argparse.SUPPRESS)
        if name == 'check':
            command.add_argument('--no-database', action='store_true', help='skip the checks PostgreSQL does')
        if name in ('show', 'run'):
            command.add_argument('pipeline', help='a dataset pipeline class name, e.g. OMISDatasetPipeline')
        if name == 'show':
            command.add_argument('--rows', type=int, default=3, help='how many rows to show (default 3)')
        if name == 'run':
            command.add_argument('--ingest-threads', type=int, default=2, help='threads loading pages (default 2)')
    args = parser.parse_args(argv)
    return COMMANDS[args.command][0](args, out)


if __name__ == '__main__':
    sys.exit(main())
