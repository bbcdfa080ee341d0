"""One real Airflow stack per test session, shared by the end-to-end tests: api-server,
scheduler, dag-processor and a Celery worker (concurrency 2) with Redis as broker, their
own metadata database, a datasets database, and the demo source on 127.0.0.1. Each test
triggers its own DAG runs and starts from an empty target table."""

import dataclasses
import os
import shutil
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from devstack.airflow_stack import AirflowStack
from devstack.source_api import DemoSource
from tests.support.browser import chromium
from tests.support.e2e import INGEST_TASK_CONCURRENCY, started_stack

WORKER_CONCURRENCY = 2


@dataclasses.dataclass
class Stack:
    airflow: AirflowStack
    source: DemoSource
    datasets_dsn: str
    hawk_key: str

    @property
    def api(self):
        return self.airflow.api

    def connect(self):
        return psycopg2.connect(self.datasets_dsn)

    unpaused: set = dataclasses.field(default_factory=set)

    def run_dag(self, dag_id, timeout=300):
        self.ready(dag_id)
        run_id = f'test-{uuid.uuid4().hex[:10]}'
        self.api.trigger(dag_id, run_id=run_id)
        return run_id, self.api.wait_run(dag_id, run_id, timeout=timeout)

    def ready(self, dag_id):
        """Unpause a DAG, once. Unpausing a scheduled DAG runs its latest interval at once:
        that run (of whatever the source holds) is let finish, so tests only meet their own."""
        if dag_id in self.unpaused:
            return
        dag = self.api.wait_dag(dag_id)
        self.api.unpause(dag_id)
        if dag.get('timetable_summary') not in (None, 'None'):
            self.api.wait_runs_finished(dag_id, 1)
        self.unpaused.add(dag_id)


E2E_PIPELINES = 'e2e_pipelines'


def copy_test_pipelines(directory):
    """A package of pipeline classes only these tests run (tests/support/e2e_pipelines), in a
    directory the stack's processes have on their path, as a team's own package would be."""
    shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'support', E2E_PIPELINES),
                    os.path.join(directory, E2E_PIPELINES))
    return directory


@pytest.fixture(scope='session')
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture(scope='session')
def stack(pg_admin_dsn, tmp_path_factory):
    env = {
        'PYTHONPATH': copy_test_pipelines(str(tmp_path_factory.mktemp('pipelines'))),
        'PIPELINE_PACKAGES': f'dataflow.pipelines,{E2E_PIPELINES}',
        'INGEST_TASK_CONCURRENCY': str(INGEST_TASK_CONCURRENCY),
        # Schedules on, as deployed; each test unpauses the DAGs it uses.
        'AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION': 'True',
        'TASK_RETRY_DELAY_SECONDS': '2',
        'SOURCE_BACKOFF_BASE': '0.2',
        'SOURCE_BACKOFF_MAX': '1',
        'SOURCE_MAX_ATTEMPTS': '3',
        'SOURCE_READ_TIMEOUT': '2',
    }
    with started_stack(pg_admin_dsn, tmp_path_factory, 'dataflow_e2e', env,
                       worker_concurrency=WORKER_CONCURRENCY) as (airflow, source, datasets_dsn, hawk_key):
        stack = Stack(airflow, source, datasets_dsn, hawk_key)
        stack.ready('OMISDatasetPipeline')
        yield stack


@pytest.fixture
def fresh_target(stack):
    """The OMIS table dropped, and the source emptied of records and queued faults."""
    conn = stack.connect()
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cursor.fetchall():
            cursor.execute(sql.SQL('DROP TABLE IF EXISTS {} CASCADE').format(sql.Identifier('public', table)))
        cursor.execute('DROP SCHEMA IF EXISTS dataflow CASCADE')
    conn.close()
    stack.source.reset()
    return stack


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.e2e)
