"""The `dataflow` command.

    dataflow check [--dsn DSN | --no-database]   validate every pipeline class; exit 1 on any problem
    dataflow list [--dsn DSN]                    pipelines, schedules, targets and last loads

Without --dsn, the database is the `datasets_db` Airflow connection (AIRFLOW_CONN_DATASETS_DB).
"""

import argparse
import sys

import psycopg2

from dataflow import ledger, tables, views
from dataflow.errors import DataflowError
from dataflow.hooks import datasets_db
from dataflow.pipelines import PIPELINES_PACKAGE, discover, discover_views

OK, FAILED = 'ok', 'FAILED'


def _connect(args):
    if args.dsn:
        return psycopg2.connect(args.dsn)
    return datasets_db.connect('datasets_db')


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
            conn = _connect(args)
        except (psycopg2.Error, DataflowError) as exc:
            print(f'Cannot reach the datasets database to check column types and views: {exc}'.strip(), file=out)
            print('Pass --dsn, set AIRFLOW_CONN_DATASETS_DB, or --no-database to skip those checks.', file=out)
            return 2
        try:
            for name, found in _database_problems(conn, datasets.specs.values(),
                                                  view_pipelines.specs.values()).items():
                problems.setdefault(name, []).extend(found)
        finally:
            conn.close()
    names = sorted({*datasets.specs, *view_pipelines.specs, *problems})
    width = max((len(n) for n in names), default=10) + 2
    for name in names:
        print(f'{name:{width}}{FAILED if name in problems else OK}', file=out)
        for problem in problems.get(name, ()):
            print(f'    {problem}', file=out)
    failed = len(problems)
    print(f'\n{len(names)} pipelines: {len(names) - failed} ok, {failed} failed'
          + ''.join(f'; {note}' for note in notes), file=out)
    return 1 if failed else 0


def list_pipelines(args, out):
    datasets, view_pipelines = discover(package=args.package), discover_views(package=args.package)
    loads = {}
    try:
        conn = _connect(args)
        try:
            loads = ledger.last_loads(conn)
        finally:
            conn.close()
    except (psycopg2.Error, DataflowError) as exc:
        print(f'(last loads unknown: {str(exc).strip()})', file=out)
    rows = [('PIPELINE', 'KIND', 'SCHEDULE', 'TARGET', 'LAST LOAD')]
    for spec in datasets.specs.values():
        last = loads.get(spec.table_name)
        rows.append((spec.name, 'dataset', str(spec.schedule), f'{spec.target_db}: {spec.table_name}',
                     f'{last[0]:%Y-%m-%d %H:%M} UTC, {last[1]} rows' if last else 'never'))
    for spec in view_pipelines.specs.values():
        rows.append((spec.name, 'view', str(spec.schedule), f'{spec.dataset.target_db}: {spec.view_name}_YYYY_MM_DD',
                     '-'))
    for name in {**datasets.errors, **view_pipelines.errors}:
        rows.append((name, 'INVALID', '-', '-', 'run `dataflow check`'))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    return 0


def main(argv=None, out=None):
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog='dataflow', description='data-flow pipelines')
    commands = parser.add_subparsers(dest='command', required=True)
    for name, help_text in (('check', 'validate every pipeline class'), ('list', 'list pipelines and last loads')):
        command = commands.add_parser(name, help=help_text)
        command.add_argument('--dsn', help='the datasets database (default: the datasets_db Airflow connection)')
        command.add_argument('--package', default=PIPELINES_PACKAGE, help=argparse.SUPPRESS)
        if name == 'check':
            command.add_argument('--no-database', action='store_true', help='skip the checks PostgreSQL does')
    args = parser.parse_args(argv)
    return check(args, out) if args.command == 'check' else list_pipelines(args, out)


if __name__ == '__main__':
    sys.exit(main())
