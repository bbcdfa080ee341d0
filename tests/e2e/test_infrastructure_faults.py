"""Infrastructure faults, end to end, on a stack of this module's own: Airflow's api-server,
scheduler, dag-processor and triggerer; two Celery workers as two hosts (worker 0 in a
network namespace of its own, reaching everything through a veth pair this module made,
worker 1 on this side); a metadata PostgreSQL, a datasets PostgreSQL and a Redis that this
module started, so that it may restart them (never the machine's shared ones).

Each test pauses a run exactly where the fault must strike (the source holds the request
for a page; a lock held on the staging or target table holds a COPY or the swap), strikes,
lets go, and then checks the data exactly: the table is the source's records cell for cell,
no row twice, no page Variable or staging table left, and the ledger consistent. What
happened and how long the run took to recover after the fault are written to
.artifacts/faults/<test>.json (the README's table comes from them). Which worker runs what
is forced (a worker is started only when it may take tasks), never left to Celery.
"""

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import threading
import time
import uuid

import psycopg2
import pytest
import redis

from devstack import services
from devstack.airflow_stack import AirflowStack
from devstack.datahub_records import omis_record
from devstack.source_api import DemoSource, Hold
from tests.support.e2e import (DAG_ID, E2E_HAWK_ID, blocked_on_lock, expected_omis, leftovers, lock_table,
                               staging_table_of, target_rows, wait_for)
from tests.support.servers import own_postgres, own_redis, worker_network

PAGE_SIZE = 100
RECORDS = range(0, 800)          # 8 pages
OLD_RECORDS = range(5000, 5750)  # an earlier load: within min_rows_ratio of RECORDS
WORKERS = (0, 1)                 # worker 0 is the one in the network namespace
DATABASE_DOWN_SECONDS = 5        # a restart or failover, as clients see it
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         '.artifacts', 'faults')

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('ip'),
                                reason='needs root and iproute2 (a network namespace for the second host)')


@dataclasses.dataclass
class FaultStack:
    airflow: AirflowStack
    source: DemoSource
    network: object
    datasets: object     # OwnPostgres of the datasets database
    broker: object       # OwnRedis
    datasets_dsn: str

    @property
    def api(self):
        return self.airflow.api

    def connect(self):
        return psycopg2.connect(self.datasets_dsn, connect_timeout=5)

    def workers(self, *wanted):
        """Exactly these workers running (a worker not wanted is killed; one missing started)."""
        for index in WORKERS:
            name = f'worker-{index}'
            running = name in self.airflow.processes
            if running and index not in wanted:
                self.airflow.kill_component(name)
            elif not running and index in wanted:
                self.airflow.start_worker(index, prefix=self.network.run_inside if index == 0 else ())


@pytest.fixture(scope='module')
def faulty(tmp_path_factory):
    hawk_key = secrets.token_urlsafe(24)
    with worker_network() as network, \
            own_postgres(network.host_address, clients=network.cidr) as metadata, \
            own_postgres(network.host_address, clients=network.cidr) as datasets, \
            own_redis(network.host_address) as broker, \
            DemoSource(E2E_HAWK_ID, hawk_key, page_size=PAGE_SIZE, host=network.host_address) as source:
        metadata_url = services.url_for(metadata.create_database('dataflow_faults_meta'))
        datasets_dsn = datasets.create_database('dataflow_faults_data')
        airflow = AirflowStack(
            str(tmp_path_factory.mktemp('airflow-home')), metadata_url, broker.url,
            services.free_port(network.host_address), host=network.host_address,
            worker_concurrency=2, components=('api-server', 'scheduler', 'dag-processor', 'triggerer'),
            env={
                'HAWK_ID': E2E_HAWK_ID,
                'HAWK_KEY': hawk_key,
                'DATAHUB_BASE_URL': source.url,
                'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn),
                'INGEST_TASK_CONCURRENCY': '4',
                'PIPELINE_SCHEDULES_ENABLED': 'false',
                'TASK_RETRIES': '3',
                'TASK_RETRY_DELAY_SECONDS': '2',
                'SOURCE_BACKOFF_BASE': '0.2',
                'SOURCE_BACKOFF_MAX': '1',
                # A held page answers late, on purpose.
                'SOURCE_READ_TIMEOUT': '300',
                # The swap waits for a reader's lock as long as the restart test needs.
                'SWAP_LOCK_TIMEOUT_MS': '120000',
            },
        )
        with airflow:
            stack = FaultStack(airflow, source, network, datasets, broker, datasets_dsn)
            stack.api.wait_dag(DAG_ID)
            stack.api.unpause(DAG_ID)
            yield stack


@pytest.fixture
def stack(faulty):
    """The module's stack, healed and with no records or queued faults in the source."""
    faulty.network.heal()
    if not faulty.broker.answers():
        faulty.broker.start()
    if not faulty.datasets.answers():
        faulty.datasets.start()
    faulty.source.reset()
    yield faulty
    faulty.network.heal()


# -- pausing a run where the fault strikes ----------------------------------------------------

@dataclasses.dataclass
class HeldRun:
    run_id: str
    holds: dict                      # page number -> Hold
    lock: object = None              # a connection holding a lock, if any

    def release(self):
        if self.lock is not None:
            with contextlib.suppress(psycopg2.Error):
                self.lock.close()
            self.lock = None
        for hold in self.holds.values():
            hold.release()


def hold_pages(stack, *pages):
    holds = {page: Hold() for page in pages}
    for page, hold in holds.items():
        stack.source.omis.fail_next(page, hold)
    return holds


def trigger(stack):
    run_id = f'fault-{uuid.uuid4().hex[:10]}'
    stack.api.trigger(DAG_ID, run_id=run_id)
    return run_id


def start_held_run(stack, held_page=2, block_copy=True):
    """Trigger a run of RECORDS and pause it: fetch holds page `held_page` (pages before it
    stored), and with `block_copy` an ingest task holds a claimed page, its COPY waiting
    for the staging table's lock."""
    stack.source.omis.put(*(omis_record(i) for i in RECORDS))
    holds = hold_pages(stack, 0, held_page) if block_copy else hold_pages(stack, held_page)
    run = HeldRun(trigger(stack), holds)
    try:
        if block_copy:
            # Nothing is stored before the lock is taken (page 0 is held): the first page
            # an ingest task claims waits in its COPY.
            run.lock = lock_table(stack, staging_table_of(stack, DAG_ID, run.run_id, timeout=300),
                                  'ACCESS EXCLUSIVE')
            holds[0].release()
        holds[held_page].wait_reached(300)
        if block_copy:
            blocked_on_lock(stack, 'COPY %', 'no ingest task reached its COPY', 300)
    except BaseException:
        run.release()
        raise
    return run


def running_on(stack, run_id):
    """{task id (map index): hostname} of the run's running task instances."""
    return {f"{ti['task_id']}[{ti['map_index']}]" if ti['map_index'] >= 0 else ti['task_id']: ti['hostname']
            for ti in stack.api.task_instances(DAG_ID, run_id) if ti['state'] == 'running'}


def tries(stack, run_id, task_id):
    return [(t['try_number'], t['state'], t['hostname']) for t in stack.api.task_tries(DAG_ID, run_id, task_id)]


# -- checking the outcome ---------------------------------------------------------------------

def check_exactly_loaded(stack, run_id):
    """The run succeeded and the table is the source's records, each once; nothing is left."""
    expected = expected_omis(stack.source.omis.records())
    loaded = target_rows(stack)
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute('SELECT count(*) - count(DISTINCT omis_order_reference) FROM omis_dataset')
        duplicated = cursor.fetchone()[0]
        cursor.execute('SELECT r.swapped_at IS NOT NULL, r.finished_at IS NOT NULL, r.pages, r.rows, '
                       '(SELECT count(*) FROM dataflow.pages p WHERE p.run_key = r.run_key), '
                       '(SELECT count(*) FROM dataflow.load_history h WHERE h.run_key = r.run_key) '
                       'FROM dataflow.runs r WHERE r.run_key LIKE %s', (f'{DAG_ID}/{run_id}#%',))
        ledger = cursor.fetchall()
    conn.close()
    lost = len(set(expected) - set(loaded))
    assert duplicated == 0 and lost == 0 and loaded == expected
    # One attempt, swapped and finished, its pages forgotten, one load history row.
    assert ledger == [(True, True, len(RECORDS) // PAGE_SIZE, len(RECORDS), 0, 1)]
    assert leftovers(stack) == ([], [])
    return {'rows_expected': len(expected), 'rows_loaded': len(loaded), 'rows_lost': lost,
            'rows_duplicated': duplicated}


def record_findings(name, **findings):
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, f'{name}.json'), 'w') as out:
        json.dump(findings, out, indent=2, default=str)


def completed(stack, run, struck_at):
    """Wait for the run, which must succeed and load exactly; (seconds from the fault to the
    run's end, check_exactly_loaded's figures)."""
    result = stack.api.wait_run(DAG_ID, run.run_id, timeout=900)
    seconds = round(time.monotonic() - struck_at, 1)
    assert result['state'] == 'success', stack.api.task_states(DAG_ID, run.run_id)
    return seconds, check_exactly_loaded(stack, run.run_id)


# -- the faults -------------------------------------------------------------------------------

def held_by_worker_0(stack):
    """A held run (start_held_run) whose fetch and an ingest task (its COPY waiting, a page
    claimed) run on worker 0, the only worker up; (the run, {task: host} of what runs)."""
    stack.workers(0)
    run = start_held_run(stack)
    held = running_on(stack, run.run_id)
    if held.get('fetch') != 'data-flow-worker-0' or 'data-flow-worker-0' not in {
            host for task, host in held.items() if task.startswith('ingest')}:
        run.release()
        pytest.fail(f'worker 0 should hold fetch and an ingest task: {held}')
    return run, held


def test_a_worker_host_lost_mid_run_its_tasks_finish_on_the_other(stack):
    run, held = held_by_worker_0(stack)
    try:
        # The host is gone: its network first (no FIN or RST reaches anyone), then every process.
        struck_at = time.monotonic()
        stack.network.cut()
        killed = stack.airflow.kill_component('worker-0')
        stack.workers(1)
    finally:
        run.release()
    seconds, data = completed(stack, run, struck_at)
    fetch_tries = tries(stack, run.run_id, 'fetch')
    assert fetch_tries[0][2] == 'data-flow-worker-0' and fetch_tries[-1][1:] == ('success', 'data-flow-worker-1')
    record_findings('worker-host-lost', fault='worker host lost (its network cut, then every process SIGKILLed)',
                    held_by_lost_worker=held, processes_killed=len(killed), fetch_tries=fetch_tries,
                    seconds_from_loss_to_run_end=seconds, **data)


def test_a_partitioned_worker_is_replaced_and_its_stale_tasks_write_nothing(stack):
    run, held = held_by_worker_0(stack)
    try:
        struck_at = time.monotonic()
        stack.network.cut()
        stack.workers(0, 1)
    finally:
        run.release()  # the held page's answer goes towards worker 0, cut off
    # Cut off for longer than the heartbeat timeout: until Airflow gave worker 0's fetch up
    # and its next try runs on worker 1.
    wait_for(lambda: any(n > 1 and host == 'data-flow-worker-1' for n, _, host in tries(stack, run.run_id, 'fetch')),
             "fetch's next try never started on worker 1", 600)
    cut_for = round(time.monotonic() - struck_at, 1)
    stack.network.heal()  # worker 0's stale tasks wake up
    seconds, data = completed(stack, run, struck_at)
    record_findings('worker-partitioned', fault='worker partitioned (its veth cut) past the heartbeat timeout, '
                    'then healed', held_by_cut_worker=held, seconds_cut=cut_for,
                    fetch_tries=tries(stack, run.run_id, 'fetch'), seconds_from_cut_to_run_end=seconds, **data)
    stack.workers(1)


def test_a_broker_restart_losing_queued_messages_delays_but_completes_the_run(stack):
    stack.workers(0, 1)
    run = start_held_run(stack, block_copy=False)
    queue = redis.Redis(host=stack.broker.host, port=stack.broker.port)
    try:
        # Fetch and 4 ingest tasks, 4 worker slots: a task waits in the broker's queue.
        wait_for(lambda: queue.llen('default') > 0, 'no task message waited in the broker', 120)
        lost = queue.llen('default')
        queued = [ti['task_id'] for ti in stack.api.task_instances(DAG_ID, run.run_id) if ti['state'] == 'queued']
        struck_at = time.monotonic()
        stack.broker.stop()  # SIGKILL: the queued messages are gone with it
        stack.broker.start()
    finally:
        run.release()
    seconds, data = completed(stack, run, struck_at)
    record_findings('broker-restart', fault='Redis killed and started again empty mid-run', messages_lost=lost,
                    queued_tasks=queued, seconds_from_restart_to_run_end=seconds, **data)


def test_a_datasets_database_restart_mid_ingest_completes_the_run(stack):
    stack.workers(0, 1)
    run = start_held_run(stack)
    try:
        struck_at = time.monotonic()
        stack.datasets.stop('immediate')  # every session ends at once, the blocked COPY's too
        time.sleep(DATABASE_DOWN_SECONDS)
        stack.datasets.start()
        down_for = round(time.monotonic() - struck_at, 1)
    finally:
        run.release()
    seconds, data = completed(stack, run, struck_at)
    record_findings('database-restart-mid-ingest', fault='datasets PostgreSQL stopped (immediate) and started '
                    'while an ingest COPY was in flight and fetch mid-run', seconds_down=down_for,
                    fetch_tries=tries(stack, run.run_id, 'fetch'), seconds_from_restart_to_run_end=seconds, **data)


class Sampler(threading.Thread):
    """Reads the target's row count over and over, as an analyst would, through whatever
    happens to the server: every count it sees must be the old table's or the new one's."""

    def __init__(self, stack):
        super().__init__(daemon=True)
        self.stack, self.seen, self.stopping = stack, set(), threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                conn = self.stack.connect()
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute('SELECT count(*) FROM omis_dataset')
                    self.seen.add(cursor.fetchone()[0])
                conn.close()
            except psycopg2.Error:
                pass
            time.sleep(0.2)

    def stop(self):
        self.stopping.set()
        self.join(30)
        return self.seen


def test_a_datasets_database_restart_during_the_swap_never_shows_a_partial_table(stack):
    stack.workers(0, 1)
    stack.source.omis.put(*(omis_record(i) for i in OLD_RECORDS))
    before = stack.api.wait_run(DAG_ID, trigger(stack), timeout=600)
    assert before['state'] == 'success'
    stack.source.reset()
    stack.source.omis.put(*(omis_record(i) for i in RECORDS))
    sampler = Sampler(stack)
    sampler.start()
    reader = stack.connect()  # an analyst's open transaction: the swap waits for its lock
    with reader.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM omis_dataset')
    run = HeldRun(trigger(stack), {}, reader)
    try:
        blocked_on_lock(stack, 'LOCK TABLE %', 'the swap never waited for its lock', 600)
        struck_at = time.monotonic()
        stack.datasets.stop('immediate')
        time.sleep(DATABASE_DOWN_SECONDS)
        stack.datasets.start()
        down_for = round(time.monotonic() - struck_at, 1)
    finally:
        run.release()
    try:
        seconds, data = completed(stack, run, struck_at)
    finally:
        seen = sampler.stop()
    assert seen <= {len(OLD_RECORDS), len(RECORDS)} and len(RECORDS) in seen
    record_findings('database-restart-during-swap', fault='datasets PostgreSQL stopped (immediate) and started '
                    'while the swap waited for its lock', seconds_down=down_for, row_counts_readers_saw=sorted(seen),
                    swap_tries=tries(stack, run.run_id, 'swap'), seconds_from_restart_to_run_end=seconds,
                    **data)


def test_an_api_server_restart_while_pages_are_handed_over_completes_the_run(stack):
    stack.workers(0, 1)
    run = start_held_run(stack, block_copy=False)
    try:
        struck_at = time.monotonic()
        stack.airflow.stop_component('api-server')
        run.release()  # fetch stores the next pages while the api-server is away
        time.sleep(5)
        stack.airflow.start_component('api-server')
        stack.api.wait_healthy(timeout=300, components=('metadatabase',))
        down_for = round(time.monotonic() - struck_at, 1)
    finally:
        run.release()
    seconds, data = completed(stack, run, struck_at)
    record_findings('api-server-restart', fault='api-server stopped and started while fetch stored pages and '
                    'ingest read them', seconds_down=down_for, fetch_tries=tries(stack, run.run_id, 'fetch'),
                    seconds_from_stop_to_run_end=seconds, **data)
