"""PAGE_STORE=file:///dir end to end, on a stack of this module's own (api-server, scheduler,
dag-processor, a Celery worker; its own metadata and datasets databases, dropped afterwards):
fetch hands the OMIS pages to the ingest tasks as files in the directory, no page Variable is
made, the table is the source's records cell for cell, and cleanup leaves the directory empty.

The run is paused while every page waits in the directory: the source holds page 0 until
the staging table is locked, so each ingest task's first COPY waits for the lock and no page
is loaded (or deleted) before the test has looked.
"""

import dataclasses
import os
import uuid

import psycopg2
import pytest

from dataflow.airflow.pagestore import object_name
from dataflow.runs import pagestore
from devstack.airflow_stack import AirflowStack
from devstack.datahub_records import omis_record
from devstack.source_api import DemoSource, Hold
from tests.support.e2e import (DAG_ID, started_stack, expected_omis, leftovers, lock_table, staging_table_of,
                               target_rows, wait_for)

pytestmark = pytest.mark.e2e

RECORDS = 450  # 5 pages, the last one short
PAGES = 5


@dataclasses.dataclass
class DiskStack:
    airflow: AirflowStack
    source: DemoSource
    datasets_dsn: str
    pages: str  # the PAGE_STORE directory

    @property
    def api(self):
        return self.airflow.api

    def connect(self):
        return psycopg2.connect(self.datasets_dsn)

    def files(self):
        return sorted(os.listdir(self.pages)) if os.path.isdir(self.pages) else []


@pytest.fixture(scope='module')
def disk_stack(pg_admin_dsn, tmp_path_factory):
    pages = str(tmp_path_factory.mktemp('shared-volume') / 'pages')  # made by the first page written
    env = {
        'PAGE_STORE': f'file://{pages}',
        # fetch and both ingest tasks at once, on the worker's 3 slots.
        'INGEST_TASK_CONCURRENCY': '2',
        'PIPELINE_SCHEDULES_ENABLED': 'false',
        'TASK_RETRY_DELAY_SECONDS': '2',
        'SOURCE_READ_TIMEOUT': '300',  # the held page answers late, on purpose
    }
    with started_stack(pg_admin_dsn, tmp_path_factory, 'dataflow_pages', env, worker_concurrency=3,
                       components=('api-server', 'scheduler', 'dag-processor', 'worker')) as (airflow, source,
                                                                                             datasets_dsn, _):
        stack = DiskStack(airflow, source, datasets_dsn, pages)
        stack.api.wait_dag(DAG_ID)
        stack.api.unpause(DAG_ID)
        yield stack


def recorded_keys(stack, run):
    """The keys of the run's stored values, as the ledger records them."""
    with stack.connect() as conn, conn.cursor() as cursor:
        cursor.execute('SELECT DISTINCT variable_key FROM dataflow.pages WHERE run_key = %s', (run,))
        keys = [key for key, in cursor.fetchall()]
    conn.close()
    return keys


def test_pages_are_handed_over_in_the_directory_and_cleanup_leaves_it_empty(disk_stack):
    stack = disk_stack
    stack.source.omis.put(*(omis_record(i) for i in range(RECORDS)))
    first_page = Hold()
    stack.source.omis.fail_next(0, first_page)
    run_id = f'pages-{uuid.uuid4().hex[:10]}'
    stack.api.trigger(DAG_ID, run_id=run_id)
    try:
        lock = lock_table(stack, staging_table_of(stack, DAG_ID, run_id, timeout=300), 'ACCESS EXCLUSIVE')
        try:
            first_page.release()
            run = pagestore.run_key(DAG_ID, run_id, 0)
            wait_for(lambda: stack.api.task_states(DAG_ID, run_id)['fetch'] == 'success',
                     'fetch did not finish', 300)
            stored = stack.files()  # no write in flight (a '.…partial' file): fetch has finished
            # One file per stored value: a page, or pages that queued up while storing was behind.
            assert stored == sorted(object_name(key) for key in recorded_keys(stack, run))
            assert set(stored) <= {object_name(pagestore.page_key(run, n, 1)) for n in range(PAGES)}
            rows = 0
            for name in stored:
                with open(os.path.join(stack.pages, name)) as page:
                    rows += pagestore.decode_page(page.read(), name).count(b'\n')  # COPY text: a line a row
            assert rows == RECORDS
            assert leftovers(stack)[0] == []  # no page Variable
        finally:
            lock.close()
    finally:
        first_page.release()

    finished = stack.api.wait_run(DAG_ID, run_id, timeout=300)
    assert finished['state'] == 'success', stack.api.task_states(DAG_ID, run_id)
    assert target_rows(stack) == expected_omis(stack.source.omis.records())
    fetched = stack.api.xcom(DAG_ID, run_id, 'fetch')
    assert (fetched['pages'], fetched['rows']) == (PAGES, RECORDS)
    assert leftovers(stack) == ([], [])
    assert stack.files() == []  # every page deleted: no page, no write in flight
