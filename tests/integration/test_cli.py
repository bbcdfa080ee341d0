import io
import os
import re
import subprocess
import sys
import textwrap
import uuid

import psycopg2.errors
import pytest

from dataflow import cli
from dataflow.definitions.discovery import discover, discover_views
from dataflow.load import catalog, ddl, localdb
from dataflow.runs import ledger
from tests.support.postgres import server_message
from tests.support.settings import use_settings

BROKEN = '''
import datetime
from dataflow.pipelines.datasets import OMISDatasetPipeline


class MoodDatasetPipeline:
    table_name = 'moods'
    source_path = '/moods'
    target_db = 'datasets_db'
    start_date = datetime.datetime(2020, 1, 1)
    field_mapping = [('id', 'id', 'integer PRIMARY KEY'), ('mood', 'mood', 'reporting.mood')]  # no such type


class TypoDatasetPipeline(MoodDatasetPipeline):
    field_mapping = [('id', 'id', 'integr')]


class MisspeltDatasetPipeline(MoodDatasetPipeline):
    field_mapping = [('id', 'id', 'integer')]
    schedule = '@daily'
    min_row_ratio = 0.5


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
    shipped = sorted([*discover().specs, *discover_views().specs])  # whatever is shipped, however many
    code, report = run('check', '--dsn', datasets_dsn)
    assert code == 0, report
    width = max(map(len, shipped)) + 2
    assert [line for line in report.splitlines() if line.endswith(' ok')] == [f'{n:{width}}ok' for n in shipped]
    assert f'{len(shipped)} pipelines: {len(shipped)} ok, 0 failed' in report


def test_check_reports_what_only_postgresql_and_the_parser_catch(datasets_dsn, broken_package, datasets_conn):
    code, report = run('check', '--dsn', datasets_dsn, '--package', broken_package)
    assert code == 1
    no_schema = server_message(datasets_conn, 'CREATE TABLE t (c reporting.mood)')
    no_column = server_message(datasets_conn, "SELECT 1 FROM pg_class WHERE no_such_column = '1'")
    assert f'MoodDatasetPipeline      FAILED\n    field_mapping: PostgreSQL refuses the table: {no_schema}' in report
    assert "TypoDatasetPipeline      FAILED\n    field_mapping[0]: column 'id': unknown column type 'integr'" in report
    assert f'WrongColumnViewPipeline  FAILED\n    PostgreSQL refuses the view: {no_column}' in report
    assert ('MisspeltDatasetPipeline  FAILED\n'
            '    min_row_ratio: unknown attribute; did you mean min_rows_ratio?\n'
            '    schedule: unknown attribute; did you mean schedule_interval?\n') in report
    assert '4 pipelines: 0 ok, 4 failed' in report
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
        ledger.record_load(cursor, 'r#0', None, 1234)
    datasets_conn.commit()
    code, report = run('list', '--dsn', datasets_dsn)
    line = next(line for line in report.splitlines() if line.startswith('OMISDatasetPipeline'))
    assert line.split()[1:5] == ['dataset', '@daily', 'datasets_db:', 'omis_dataset'] and line.endswith('1234 rows')


def test_the_dataflow_command_is_installed():
    command = os.path.join(os.path.dirname(sys.executable), 'dataflow')
    result = subprocess.run([command, 'check', '--no-database'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_list_says_unknown_not_never_when_it_cannot_read_the_loads(monkeypatch, tmp_path):
    use_settings(monkeypatch, airflow_conn_datasets_db='', dataflow_state_dir=str(tmp_path))  # no demo recorded here
    code, report = run('list')
    assert code == 0
    assert report.startswith('(last loads unknown: no datasets database: pass --dsn, set AIRFLOW_CONN_DATASETS_DB, '
                             'or run bin/demo)')
    line = next(line for line in report.splitlines() if line.startswith('OMISDatasetPipeline'))
    assert line.endswith('unknown') and 'never' not in report


def test_commands_find_the_database_a_demo_recorded(monkeypatch, tmp_path, datasets_dsn, datasets_conn):
    use_settings(monkeypatch, airflow_conn_datasets_db='', dataflow_state_dir=str(tmp_path))
    localdb.record(datasets_dsn)
    ledger.ensure_schema(datasets_conn)
    ledger.start_run(datasets_conn, 'r#0', 'OMISDatasetPipeline', 'omis_dataset', 'stg')
    with datasets_conn.cursor() as cursor:
        ledger.record_load(cursor, 'r#0', None, 77)
    datasets_conn.commit()
    code, report = run('list')
    line = next(line for line in report.splitlines() if line.startswith('OMISDatasetPipeline'))
    assert code == 0 and line.endswith('UTC, 77 rows'), report


def test_show_prints_columns_count_and_first_rows_read_only(datasets_dsn, datasets_conn):
    spec = discover().specs['OMISDatasetPipeline']
    code, report = run('show', 'OMISDatasetPipeline', '--dsn', datasets_dsn)
    assert code == 0 and 'The table does not exist yet' in report
    ddl.create_table(datasets_conn, spec.table_name, spec.columns)
    with datasets_conn.cursor() as cursor:
        for n in range(5):
            cursor.execute('INSERT INTO omis_dataset (omis_order_reference, company_name) VALUES (%s, %s)',
                           (f'OMIS-{n}', f'Company {n}'))
    datasets_conn.commit()
    code, report = run('show', 'OMISDatasetPipeline', '--dsn', datasets_dsn, '--rows', '2')
    assert code == 0
    assert '5 rows; no load recorded' in report
    assert re.search(r'\nomis_order_reference +character varying\(100\) PRIMARY KEY +reference\n', report)
    assert report.count('-[ row ') == 2 and re.search(r'\ncompany_name +\| Company 0\n', report)
    code, report = run('show', 'NoSuchDatasetPipeline', '--dsn', datasets_dsn)
    assert code == 1 and "No dataset pipeline 'NoSuchDatasetPipeline'; there are: " in report


def test_previews_cannot_write(datasets_conn):
    with datasets_conn.cursor() as cursor:
        cursor.execute('CREATE TABLE t (id int); INSERT INTO t VALUES (1)')
    datasets_conn.commit()
    assert catalog.preview(datasets_conn, 't', 10) == (['id'], [(1,)])
    # The same read-only transaction refuses a write, whatever a name could smuggle in.
    with datasets_conn.cursor() as cursor:
        cursor.execute('SET TRANSACTION READ ONLY')
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cursor.execute('INSERT INTO t VALUES (2)')
    datasets_conn.rollback()


def run_command(argv, env, terminal=False, timeout=300):
    """(exit code, output) of the installed `dataflow` command; on a pseudo-terminal if asked."""
    command = [os.path.join(os.path.dirname(sys.executable), 'dataflow'), *argv]
    if not terminal:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        return result.returncode, result.stdout + result.stderr
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=timeout), b''.join(chunks).decode('utf-8', 'replace')


def test_run_loads_a_pipeline_in_one_process_with_progress_on_a_terminal(source, datasets_dsn, datasets_conn):
    from devstack.datahub_records import omis_record
    from tests.support.sources import TEST_HAWK_ID, TEST_HAWK_KEY

    source.omis.put(*(omis_record(i) for i in range(1250)))
    env = {**os.environ, 'HAWK_ID': TEST_HAWK_ID, 'HAWK_KEY': TEST_HAWK_KEY, 'DATAHUB_BASE_URL': source.url}
    code, output = run_command(['run', 'OMISDatasetPipeline', '--dsn', datasets_dsn], env, terminal=True)
    assert code == 0, output
    assert re.search(r'\rfetched \d+ pages \([\d,]+ rows\).*; loaded \d+ pages \([\d,]+ rows\); [\d,]+ rows/s', output)
    assert re.search(r'OMISDatasetPipeline: loaded 1,250 rows in 13 pages in [\d.]+ s \([\d,]+ rows/s\); '
                     r'omis_dataset: no table -> 1250 rows', output), output
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM omis_dataset')
        assert cursor.fetchone() == (1250,)
        cursor.execute('SELECT pipeline, rows_before, rows_after, source_url FROM dataflow.load_history')
        assert cursor.fetchall() == [('OMISDatasetPipeline', None, 1250, source.omis.url)]
    datasets_conn.commit()

    # Not on a terminal: no progress line; a failure is named, the table left as it was.
    source.omis.fail_next(3, *[503] * 20)
    code, output = run_command(['run', 'OMISDatasetPipeline', '--dsn', datasets_dsn],
                               {**env, 'SOURCE_MAX_ATTEMPTS': '2', 'SOURCE_BACKOFF_BASE': '0.01'})
    assert code == 1 and '\r' not in output
    assert f'OMISDatasetPipeline failed: OMISDatasetPipeline: page {source.omis.page_url(3)}: gave up after ' \
           '2 attempts: HTTP 503' in output, output
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM omis_dataset')
        assert cursor.fetchone() == (1250,)
    datasets_conn.commit()
