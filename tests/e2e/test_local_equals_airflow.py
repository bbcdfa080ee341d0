"""`dataflow run` (one process, the steps in threads) and the Airflow DAG (the same steps as
tasks on the scheduler and Celery worker) load the same source into the same table, row
for row, and each records its load in the load history."""

import os
import subprocess
import sys

from psycopg2 import sql

from devstack import services
from devstack.datahub_records import omis_record
from tests.support.e2e import DAG_ID, E2E_HAWK_ID


def table_and_history(dsn):
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL('SELECT * FROM omis_dataset ORDER BY 1'))
            rows = cursor.fetchall()
            cursor.execute('SELECT pipeline, rows_before, rows_after, source_url FROM dataflow.load_history')
            history = cursor.fetchall()
    finally:
        conn.close()
    return rows, history


def test_dataflow_run_equals_the_airflow_path_on_the_same_source(fresh_target, pg_admin_dsn):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(730)))
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success', stack.api.task_states(DAG_ID, run_id)

    with services.scratch_database(pg_admin_dsn, 'dataflow_e2e_local') as local_dsn:
        env = {**os.environ, 'HAWK_ID': E2E_HAWK_ID, 'HAWK_KEY': stack.hawk_key, 'DATAHUB_BASE_URL': stack.source.url}
        command = [os.path.join(os.path.dirname(sys.executable), 'dataflow'), 'run', DAG_ID, '--dsn', local_dsn]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        local_rows, local_history = table_and_history(local_dsn)
    airflow_rows, airflow_history = table_and_history(stack.datasets_dsn)
    assert len(local_rows) == 730 and local_rows == airflow_rows
    assert local_history == airflow_history == [(DAG_ID, None, 730, stack.source.omis.url)]
