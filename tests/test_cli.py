import io
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from dataflow import cli, ledger

BROKEN = '''
import datetime
from dataflow.meta.datasets_flow import OMISDatasetPipeline


class MoodDatasetPipeline:
    table_name = 'moods'
    source_url = 'http://127.0.0.1:9/moods'
    target_db = 'datasets_db'
    start_date = datetime.datetime(2020, 1, 1)
    field_mapping = [('id', 'id', 'integer PRIMARY KEY'), ('mood', 'mood', 'reporting.mood')]  # no such type


class TypoDatasetPipeline(MoodDatasetPipeline):
    field_mapping = [('id', 'id', 'integr')]


class WrongColumnViewPipeline:
    view_name = 'wrong_column'
    dataset_pipeline = OMISDatasetPipeline
    start_date = datetime.datetime(2020, 1, 1)
    fields = [('company_name', 'Company')]
    where_clause = "no_such_column = '{{ ds }}'"
'''


@pytest.fixture
def broken_package(tmp_path, monkeypatch):
    name = f'pipelines_{uuid.uuid4().hex[:8]}'
    (tmp_path / name).mkdir()
    (tmp_path / name / '__init__.py').write_text('')
    (tmp_path / name / 'broken.py').write_text(textwrap.dedent(BROKEN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def run(*argv):
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_check_passes_the_shipped_pipelines(datasets_dsn):
    code, report = run('check', '--dsn', datasets_dsn)
    assert code == 0, report
    assert 'OMISDatasetPipeline             ok' in report and '3 pipelines: 3 ok, 0 failed' in report


def test_check_reports_what_only_postgresql_and_the_parser_catch(datasets_dsn, broken_package, datasets_conn):
    code, report = run('check', '--dsn', datasets_dsn, '--package', broken_package)
    assert code == 1
    assert 'MoodDatasetPipeline      FAILED\n    field_mapping: PostgreSQL refuses the table: schema "reporting" does not exist' in report
    assert "TypoDatasetPipeline      FAILED\n    field_mapping[0]: column 'id': unknown column type 'integr'" in report
    assert 'WrongColumnViewPipeline  FAILED\n    PostgreSQL refuses the view: column "no_such_column" does not exist' in report
    assert '3 pipelines: 0 ok, 3 failed' in report
    with datasets_conn.cursor() as cursor:  # everything it tried was rolled back
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%mood%' OR relname LIKE '_df_%'")
        assert cursor.fetchone() == (0,)


def test_check_without_a_database_says_how_to_give_one():
    code, report = run('check', '--dsn', 'postgresql://postgres@127.0.0.1:1/nowhere')
    assert code == 2 and 'Pass --dsn, set AIRFLOW_CONN_DATASETS_DB, or --no-database' in report
    code, report = run('check', '--no-database')
    assert code == 0 and 'PostgreSQL was not asked (--no-database)' in report


def test_list_shows_schedules_targets_and_last_loads(datasets_dsn, datasets_conn):
    code, report = run('list', '--dsn', datasets_dsn)
    assert code == 0 and 'OMISDatasetPipeline' in report and 'never' in report
    ledger.ensure_schema(datasets_conn)
    ledger.start_run(datasets_conn, 'r#0', 'OMISDatasetPipeline', 'omis_dataset', 'stg')
    with datasets_conn.cursor() as cursor:
        ledger.record_load(cursor, 'r#0', None, 1234, 'http://source')
    datasets_conn.commit()
    code, report = run('list', '--dsn', datasets_dsn)
    line = next(line for line in report.splitlines() if line.startswith('OMISDatasetPipeline'))
    assert line.split()[1:5] == ['dataset', '@daily', 'datasets_db:', 'omis_dataset'] and line.endswith('1234 rows')


def test_the_dataflow_command_is_installed():
    command = os.path.join(os.path.dirname(sys.executable), 'dataflow')
    result = subprocess.run([command, 'check', '--no-database'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
