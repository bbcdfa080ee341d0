"""The `dataflow` command.

    dataflow check [--dsn DSN | --no-database]   validate every pipeline class; exit 1 on any problem
    dataflow list [--dsn DSN]                    pipelines, schedules, targets and last loads
    dataflow show PIPELINE [--rows N] [--dsn DSN]  a dataset's columns, row count, last load, first rows

The datasets database is, in this order: --dsn; the `datasets_db` Airflow connection
(AIRFLOW_CONN_DATASETS_DB); the database a demo run recorded (dataflow.localdb), its
embedded server started for the command when the demo has stopped.
"""

import argparse
import contextlib
import sys

import psycopg2

from dataflow import constants, ledger, localdb, tables, views
from dataflow.errors import DataflowError
from dataflow.hooks import datasets_db
from dataflow.pipelines import PIPELINES_PACKAGE, discover, discover_views

OK, FAILED = 'ok', 'FAILED'


class NoDatabase(DataflowError):
    """No datasets database was given, configured or recorded."""


@contextlib.contextmanager
def _connection(args):
    """A connection to the datasets database (see the module's docstring), closed on exit."""
    if args.dsn:
        conn = psycopg2.connect(args.dsn)
    elif constants.AIRFLOW_CONN_DATASETS_DB or constants.DATASETS_DB_URL:
        conn = datasets_db.connect('datasets_db')
    else:
        with localdb.recorded_database() as dsn:
            if dsn is None:
                raise NoDatabase('no datasets database: pass --dsn, set AIRFLOW_CONN_DATASETS_DB, or run bin/demo')
            conn = psycopg2.connect(dsn)
            try:
                yield conn
            finally:
                conn.close()
            return
    try:
        yield conn
    finally:
        conn.close()


def _database_problems(conn, dataset_specs, view_specs):
    """{pipeline name: [problem]} from PostgreSQL itself, in transactions rolled back."""
    problems = {}
    for spec in dataset_specs:
        try:
            tables.create_table(conn, tables.staging_table_name(spec.table_name, 'dataflow-check'), spec.columns)
        except psycopg2.Error as exc:
            problems.setdefault(spec.name, []).append(f'field_mapping: PostgreSQL refuses the table: '
                                                      f'{exc.diag.message_primary}')
        finally:
            conn.rollback()
    for spec in view_specs:
        try:
            where = views.render_where_clause(spec, views.template_context(spec.start_date, params=spec.params))
            if not tables.table_exists(conn, spec.dataset.table_name):
                tables.create_table(conn, spec.dataset.table_name, spec.dataset.columns)
            with conn.cursor() as cursor:
                cursor.execute(views.create_view_statement(f'_df_check_{spec.view_name}', spec, where))
        except DataflowError as exc:
            problems.setdefault(spec.name, []).append(str(exc))
        except psycopg2.Error as exc:
            problems.setdefault(spec.name, []).append(f'PostgreSQL refuses the view: {exc.diag.message_primary}')
        finally:
            conn.rollback()
    return problems


def _indented(text, indent='    '):
    """A problem under its pipeline's name: continuation lines (a caret under a column
    type) keep their place under the first line."""
    return '\n'.join(indent + line for line in text.splitlines())


def check(args, out):
    datasets, view_pipelines = discover(package=args.package), discover_views(package=args.package)
    problems = {}
    for name, error in {**datasets.errors, **view_pipelines.errors}.items():
        problems[name] = [f'{a}: {p}' for a, p in error.problems] if hasattr(error, 'problems') else [
            f'does not import: {type(error).__name__}: {error}']
    notes = []
    if args.no_database:
        notes.append('PostgreSQL was not asked (--no-database)')
    else:
        try:
            with _connection(args) as conn:
                for name, found in _database_problems(conn, datasets.specs.values(),
                                                      view_pipelines.specs.values()).items():
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


def _table(rows, out):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)


def list_pipelines(args, out):
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
    for spec in view_pipelines.specs.values():
        rows.append((spec.name, 'view', str(spec.schedule), f'{spec.dataset.target_db}: {spec.view_name}_YYYY_MM_DD',
                     '-'))
    for name in {**datasets.errors, **view_pipelines.errors}:
        rows.append((name, 'INVALID', '-', '-', 'run `dataflow check`'))
    _table(rows, out)
    return 0


def _cell(value):
    text = 'NULL' if value is None else str(value)
    return text if len(text) <= 80 else text[:79] + '…'


def show(args, out):
    datasets = discover(package=args.package)
    spec = datasets.specs.get(args.pipeline)
    if spec is None:
        if args.pipeline in datasets.errors:
            print(f'{args.pipeline} is not valid: {datasets.errors[args.pipeline]}', file=out)
        else:
            print(f'No dataset pipeline {args.pipeline!r}; there are: {", ".join(sorted(datasets.specs))}', file=out)
        return 1
    try:
        with _connection(args) as conn:
            exists = tables.table_exists(conn, spec.table_name)
            count = tables.row_count(conn, spec.table_name) if exists else None
            last = ledger.last_loads(conn).get(spec.table_name)
            names, rows = tables.preview(conn, spec.table_name, args.rows) if exists else ((), ())
    except (psycopg2.Error, DataflowError) as exc:
        print(f'Cannot read the datasets database: {str(exc).strip()}', file=out)
        return 2
    print(f'{spec.name}: {spec.source_url} -> {tables.DEFAULT_SCHEMA}.{spec.table_name}', file=out)
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


def main(argv=None, out=None):
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog='dataflow', description='data-flow pipelines')
    commands = parser.add_subparsers(dest='command', required=True)
    helps = {'check': 'validate every pipeline class', 'list': 'list pipelines and last loads',
             'show': "a dataset's columns, row count, last load and first rows"}
    for name, help_text in helps.items():
        command = commands.add_parser(name, help=help_text)
        command.add_argument('--dsn', help='the datasets database (default: the datasets_db Airflow connection, '
                                           'else the demo\'s)')
        command.add_argument('--package', default=PIPELINES_PACKAGE, help=argparse.SUPPRESS)
        if name == 'check':
            command.add_argument('--no-database', action='store_true', help='skip the checks PostgreSQL does')
        if name == 'show':
            command.add_argument('pipeline', help='a dataset pipeline class name, e.g. OMISDatasetPipeline')
            command.add_argument('--rows', type=int, default=3, help='how many rows to show (default 3)')
    args = parser.parse_args(argv)
    return {'check': check, 'list': list_pipelines, 'show': show}[args.command](args, out)


if __name__ == '__main__':
    sys.exit(main())
