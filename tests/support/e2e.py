"""What the end-to-end tests share: the shape of the stack they run on, the OMIS table as
the source should make it, what a finished run must not leave behind, and the means to
pause a run where a test wants it (a lock held on a table) and to wait for what it awaits."""

import contextlib
import os
import secrets
import time
import uuid

import pytest
from psycopg2 import sql

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.pipelines.datasets import OMISDatasetPipeline
from dataflow.runs.pagestore import PAGE_KEY_PREFIX
from devstack import services
from devstack.airflow_stack import AirflowStack
from devstack.source_api import DemoSource
from tests.support.expected import expected_rows, table_rows

E2E_HAWK_ID = 'e2e-hawk-id'
INGEST_TASK_CONCURRENCY = 4
PAGE_SIZE = 100

DAG_ID = 'OMISDatasetPipeline'
OMIS = dataset_pipeline_spec(OMISDatasetPipeline)


def expected_omis(records):
    """The OMIS table the source's records must make, cell for cell."""
    return expected_rows(OMIS, records)


def target_rows(stack, spec=OMIS):
    """The rows of a dataset table of the stack, ordered as expected_rows orders them."""
    conn = stack.connect()
    try:
        return table_rows(conn, spec)
    finally:
        conn.close()


def leftovers(stack):
    """Page Variables and staging tables that a finished run must not leave behind."""
    variables = [v['key'] for v in stack.api.variables() if v['key'].startswith(PAGE_KEY_PREFIX)]
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relname LIKE '\\_df\\_%' AND relkind = 'r'")
        tables = [r[0] for r in cursor.fetchall()]
    conn.close()
    return variables, tables


def files_containing(directory, *secrets_):
    """Files under `directory` holding any of `secrets_`, and how many files were read."""
    found, read = [], 0
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, 'rb') as handle:
                    content = handle.read()
            except OSError:
                continue
            read += 1
            found += [f'{path}: {secret[:4]}…' for secret in secrets_ if secret.encode() in content]
    return found, read


def staging_table_of(stack, dag_id, run_id, timeout=60):
    """The staging table of a DAG run, once the run has created it."""
    deadline = time.monotonic() + timeout
    conn = stack.connect()
    conn.autocommit = True
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cursor:
                cursor.execute("SELECT to_regclass('dataflow.runs') IS NOT NULL")
                if cursor.fetchone()[0]:
                    cursor.execute('SELECT staging_table FROM dataflow.runs WHERE run_key LIKE %s',
                                   (f'{dag_id}/{run_id}#%',))
                    row = cursor.fetchone()
                    if row:
                        cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (f'public."{row[0]}"',))
                        if cursor.fetchone()[0]:
                            return row[0]
            time.sleep(0.2)
    finally:
        conn.close()
    pytest.fail(f'the run {run_id} never created its staging table')


def blocked_on_lock(stack, pattern, failure, timeout=60):
    """(backend pid, client address, client port) of a statement of the stack's datasets
    database matching `pattern` (SQL LIKE) that waits for a lock; the test fails with
    `failure` when none does within `timeout` seconds."""
    conn = stack.connect()
    conn.autocommit = True  # pg_stat_activity is one snapshot per transaction: look afresh each time
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with conn.cursor() as cursor:
                # This database only: the server may hold other suites' blocked statements.
                cursor.execute("SELECT pid, host(client_addr), client_port FROM pg_stat_activity "
                               "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                               "AND query LIKE %s AND pid <> pg_backend_pid()", (pattern,))
                row = cursor.fetchone()
            if row:
                return row
            time.sleep(0.2)
    finally:
        conn.close()
    pytest.fail(f'{failure} in {timeout} s')


def lock_table(stack, table, mode):
    """A connection holding a `mode` lock on `table` of the stack's datasets database: it
    lasts until the connection's transaction ends (close the connection to let go)."""
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('LOCK TABLE {} IN {} MODE').format(sql.Identifier(table), sql.SQL(mode)))
    return conn


def wait_for(condition, failure, timeout):
    """What `condition()` returns once it is true; the test fails with `failure` when it is
    not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f'{failure} in {timeout} s')


@contextlib.contextmanager
def started_stack(pg_admin_dsn, tmp_path_factory, name, env, **stack_kwargs):
    """An Airflow stack of a test module's (or session's) own, started: its metadata and
    datasets databases (`name`_meta, `name`_data, dropped afterwards), Redis (its keys under a
    prefix of its own, deleted when it stops) and the demo source, with the source's Hawk
    credentials and URL and the datasets connection set, and `env`.
    Yields (AirflowStack, DemoSource, datasets DSN, Hawk key)."""
    hawk_key = secrets.token_urlsafe(24)
    with services.scratch_database(pg_admin_dsn, f'{name}_meta') as metadata_dsn, \
            services.scratch_database(pg_admin_dsn, f'{name}_data') as datasets_dsn, \
            services.redis_server() as redis_url, \
            DemoSource(E2E_HAWK_ID, hawk_key, page_size=PAGE_SIZE) as source:
        airflow = AirflowStack(
            str(tmp_path_factory.mktemp('airflow-home')), services.url_for(metadata_dsn), redis_url,
            services.free_port(), broker_key_prefix=f'dataflow-e2e-{uuid.uuid4().hex[:8]}:',
            env={
                'HAWK_ID': E2E_HAWK_ID,
                'HAWK_KEY': hawk_key,
                'DATAHUB_BASE_URL': source.url,
                'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn),
                **env,
            },
            **stack_kwargs,
        )
        with airflow:
            yield airflow, source, datasets_dsn, hawk_key
