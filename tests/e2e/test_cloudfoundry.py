"""Cloud Foundry, simulated on this machine: the master app from Procfile-master and two
worker apps from Procfile-worker (run with honcho, as the buildpack runs a Procfile), each
with its own home directory, CF's environment (VCAP_SERVICES pointing at the local
PostgreSQL and Redis, VCAP_APPLICATION, CF_INSTANCE_INDEX, PORT) and only the settings
that app would be given."""

import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import psycopg2
import psutil
import pytest
import requests
from cryptography.fernet import Fernet

from devstack import services
from devstack.airflow_stack import AirflowApi
from devstack.datahub_records import omis_record
from devstack.source_api import DemoSource
from tests.support.checkout import ROOT

HONCHO = os.path.join(os.path.dirname(sys.executable), 'honcho')
AWKWARD_PASSWORD = 'p@ss/w%rd:#?'  # the local server trusts local connections; the escaping is what is tested
HAWK_ID, DAG_ID, ROWS = 'cf-hawk-id', 'OMISDatasetPipeline', 3000


class App:
    def __init__(self, name, procfile, env, home):
        self.name, self.home = name, home
        os.makedirs(home, exist_ok=True)
        self.log_path = os.path.join(home, 'app.log')
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen([HONCHO, '-f', procfile, 'start'], cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_log(self, text, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f'{self.name} exited:\n{self.log_tail()}')
            with open(self.log_path, errors='replace') as log:
                if text in log.read():
                    return
            time.sleep(0.5)
        pytest.fail(f'{self.name} did not log {text!r} in {timeout} s:\n{self.log_tail()}')

    def log_tail(self):
        with open(self.log_path, errors='replace') as log:
            return log.read()[-4000:]

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def cf_environment(home, app_name, index, vcap_services, port, **settings):
    """What Cloud Foundry gives an app instance, plus the app's own settings."""
    return {
        'PATH': os.path.dirname(sys.executable) + os.pathsep + '/usr/local/bin:/usr/bin:/bin',
        'HOME': home, 'LANG': 'C.UTF-8', 'PORT': str(port), 'CF_INSTANCE_INDEX': str(index),
        'VCAP_SERVICES': json.dumps(vcap_services),
        'VCAP_APPLICATION': json.dumps({'application_name': app_name, 'application_uris': []}),
        **settings,
    }


@pytest.fixture(scope='module')
def cloud_foundry(pg_admin_dsn, tmp_path_factory):
    params = psycopg2.extensions.parse_dsn(pg_admin_dsn)
    if params.get('host', '').startswith('/'):
        pytest.skip('the Cloud Foundry simulation needs PostgreSQL over TCP (as bound services are)')
    prefix = f'dataflow-e2e-cf-{secrets.token_hex(4)}:'
    hawk_key = secrets.token_urlsafe(24)
    homes = tmp_path_factory.mktemp('cf')
    with services.scratch_database(pg_admin_dsn, 'dataflow_e2e_cf') as dsn, services.redis_server() as redis_url, \
            DemoSource(HAWK_ID, hawk_key, page_size=100) as source:
        db = psycopg2.extensions.parse_dsn(dsn)
        redis_parts = requests.utils.urlparse(redis_url)
        vcap_services = {
            'postgres': [{'name': 'data-flow-db', 'label': 'postgres', 'credentials': {
                'host': db.get('host', '127.0.0.1'), 'port': int(db.get('port', 5432)), 'name': db['dbname'],
                'username': db.get('user', 'postgres'), 'password': AWKWARD_PASSWORD}}],
            'redis': [{'name': 'data-flow-redis', 'label': 'redis', 'credentials': {
                'host': redis_parts.hostname, 'port': redis_parts.port, 'password': '', 'tls_enabled': False}}],
        }
        master_port = services.free_port()
        shared = {  # cf set-env on every app
            'HAWK_ID': HAWK_ID, 'HAWK_KEY': hawk_key, 'DATAHUB_BASE_URL': source.url, 'INGEST_TASK_CONCURRENCY': '4',
            'PIPELINE_SCHEDULES_ENABLED': 'false', 'TASK_RETRY_DELAY_SECONDS': '2',
            # Keeps this test's Celery keys apart from others on the same Redis.
            'AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX': prefix,
        }
        master_env = cf_environment(
            str(homes / 'master'), 'data-flow', 0, vcap_services, master_port, **shared,
            AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32), AIRFLOW__API__SECRET_KEY=secrets.token_urlsafe(32),
            AUTHBROKER_URL='https://sso.example', AUTHBROKER_CLIENT_ID='data-flow',
            AUTHBROKER_CLIENT_SECRET=secrets.token_urlsafe(16), AUTHBROKER_ALLOWED_DOMAINS='trade.gov.uk',
        )
        apps = [App('master', 'Procfile-master', master_env, str(homes / 'master'))]
        try:
            wait_healthy(master_port, apps[0])
            for index in range(2):
                home = str(homes / f'worker-{index}')
                apps.append(App(f'worker-{index}', 'Procfile-worker', cf_environment(
                    home, 'data-flow-worker', index, vcap_services, services.free_port(), **shared,
                    DATAFLOW_MASTER_URL=f'http://127.0.0.1:{master_port}',  # the master's internal route
                    AIRFLOW__CELERY__WORKER_CONCURRENCY='2',
                    AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(services.free_port()),
                ), home))
            for index, worker in enumerate(apps[1:]):
                # Both must be taking tasks before the run starts, or one takes them all.
                worker.wait_for_log(f'celery@data-flow-worker-{index} ready')
            password = secrets.token_urlsafe(16)
            create_operator(master_env, password)
            api = AirflowApi(f'http://127.0.0.1:{master_port}', 'operator', password)
            yield api, apps, source, dsn
        finally:
            for app in reversed(apps):
                app.stop()
            client = __import__('redis').Redis.from_url(redis_url)
            for key in client.scan_iter(match=prefix + '*'):
                client.delete(key)


def create_operator(master_env, password, timeout=120):
    """An Admin database user for the REST API. The api-server creates FAB's roles as it
    starts, which can finish after it first reports healthy: try until the role exists."""
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            # --password=...: a random password may begin with '-', which would read as an option.
            [sys.executable, '-m', 'dataflow.deploy', 'airflow', 'users', 'create', '--username', 'operator',
             f'--password={password}', '--role', 'Admin', '--email', 'operator@trade.gov.uk', '--firstname', 'Op',
             '--lastname', 'Erator'], cwd=ROOT, env=master_env, capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f'could not create the operator user:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}')
        time.sleep(2)


def wait_healthy(port, app, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            pytest.fail(f'the master exited:\n{app.log_tail()}')
        try:
            health = requests.get(f'http://127.0.0.1:{port}/api/v2/monitor/health', timeout=5).json()
            if all(health.get(c, {}).get('status') == 'healthy'
                   for c in ('metadatabase', 'scheduler', 'dag_processor', 'triggerer')):
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    pytest.fail(f'the master was not healthy in {timeout} s:\n{app.log_tail()}')


WORKERS = ('data-flow-worker-0', 'data-flow-worker-1')
SLOTS_PER_WORKER = 2  # AIRFLOW__CELERY__WORKER_CONCURRENCY of each worker app, above
INGEST_TASKS = 4      # INGEST_TASK_CONCURRENCY, above: as many as both workers' slots together


class RunWatch:
    """What the test looks at while a run goes on: the run's ledger, locks and tasks."""

    def __init__(self, api, dsn, run_id):
        self.api, self.run_id = api, run_id
        self.run_key_pattern = f'{DAG_ID}/{run_id}#%'
        self.blocker_pid = None  # the backend that holds the test's lock, once it does
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True  # pg_stat_activity is one snapshot per transaction: look afresh each time

    def close(self):
        self.conn.close()

    def query(self, statement, args=()):
        with self.conn.cursor() as cursor:
            cursor.execute(statement, args)
            return cursor.fetchall()

    def _ledger_exists(self):
        return self.query("SELECT to_regclass('dataflow.runs') IS NOT NULL")[0][0]

    def staging_table(self):
        """The run's staging table once create-target-table has committed it, else None."""
        if not self._ledger_exists():
            return None
        rows = self.query('SELECT staging_table FROM dataflow.runs WHERE run_key LIKE %s', (self.run_key_pattern,))
        if rows and self.query('SELECT to_regclass(%s) IS NOT NULL', (f'public."{rows[0][0]}"',))[0][0]:
            return rows[0][0]
        return None

    def copies_waiting(self):
        """(backend pid, client port) of each COPY waiting for the test's lock."""
        return self.query("SELECT pid, client_port FROM pg_stat_activity "
                          "WHERE %s = ANY(pg_blocking_pids(pid)) AND query LIKE 'COPY %%'", (self.blocker_pid,))

    def tasks(self):
        return {ti['task_id']: ti for ti in self.api.task_instances(DAG_ID, self.run_id)}

    def describe(self):
        """The run's tasks and ledger, for failure messages."""
        tasks = {task_id: (ti['state'], ti['hostname'], ti['try_number']) for task_id, ti in self.tasks().items()}
        fetch = pages = None
        if self._ledger_exists():
            fetch = self.query('SELECT fetch_state, fetch_error FROM dataflow.runs WHERE run_key LIKE %s',
                               (self.run_key_pattern,))
            pages = dict(self.query('SELECT state, count(*) FROM dataflow.pages WHERE run_key LIKE %s GROUP BY state',
                                    (self.run_key_pattern,)))
        waiting = self.copies_waiting() if self.blocker_pid else None
        return f'tasks (state, hostname, try): {tasks}; fetch: {fetch}; pages: {pages}; COPYs waiting: {waiting}'

    def wait(self, what, found, timeout):
        """found()'s first true value, looked for every 0.1 s; fails, showing the tasks and the
        ledger, when the run ends first or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        next_run_check = 0
        while True:
            value = found()
            if value:
                return value
            now = time.monotonic()
            if now > deadline:
                pytest.fail(f'{what}: not after {timeout} s; {self.describe()}')
            if now > next_run_check:
                run = self.api.dag_run(DAG_ID, self.run_id)
                if run['state'] in ('success', 'failed'):
                    pytest.fail(f'the run ended ({run["state"]}) before {what}; {self.describe()}')
                next_run_check = now + 2
            time.sleep(0.1)


def connections_held(apps, server_port, client_ports):
    """{app name: how many of its live processes' connections to the PostgreSQL server at
    `server_port` come from `client_ports`}, for the apps that hold any."""
    wanted = set(client_ports)
    held = collections.Counter()
    for app in apps:
        for process in processes_under(app.process.pid, ''):
            try:
                connections = process.net_connections(kind='tcp')
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            held[app.name] += sum(1 for c in connections
                                  if c.raddr and c.raddr.port == server_port and c.laddr.port in wanted)
    return dict(held)


# Longer than the default (600 s, which counts the module's set-up too): the waits below
# then fail first, with the run's task states.
@pytest.mark.timeout(1200)
def test_a_pipeline_triggered_on_the_master_runs_on_both_workers(cloud_foundry):
    # The workers run with a worker's trimmed environment (no metadata database URL, no
    # shared secrets: tests/unit/deploy/test_environment.py), and still do the whole job.
    #
    # Both workers take part by construction, not by which worker Celery happens to pick:
    # a worker holds at most `concurrency` tasks at once (Airflow's Celery settings:
    # worker_prefetch_multiplier 1 and task_acks_late True, so a running task is still
    # unacknowledged and counts against the worker's prefetch limit of 2 x 1), and the test
    # keeps every ingest task inside its COPY, in its worker slot, until all 4 are there.
    # 4 tasks in 2 + 2 slots: 2 on each worker.
    api, apps, source, dsn = cloud_foundry
    source.omis.put(*(omis_record(i) for i in range(ROWS)))
    api.wait_dag(DAG_ID)
    api.unpause(DAG_ID)
    run_id = f'cf-{secrets.token_hex(4)}'
    watch = RunWatch(api, dsn, run_id)
    blocker = psycopg2.connect(dsn)
    server_port = int(psycopg2.extensions.parse_dsn(dsn).get('port', 5432))
    try:
        triggered = time.monotonic()
        api.trigger(DAG_ID, run_id=run_id)
        # No ingest task can start before this: they start only after create-target-table
        # has committed the table, reported success, and been seen by the scheduler.
        staging = watch.wait('the run created its staging table', watch.staging_table, timeout=180)
        with blocker.cursor() as cursor:  # from now on every COPY into it waits, holding its slot
            cursor.execute(f'LOCK TABLE public."{staging}" IN ACCESS EXCLUSIVE MODE')
            cursor.execute('SELECT pg_backend_pid()')
            [watch.blocker_pid] = cursor.fetchone()
        locked = time.monotonic()
        # fetch needs nothing of the staging table, so it stores all 30 pages and ends, giving
        # its slot back. An ingest task that finds no page yet polls, or hands its slot back
        # and is run again; one that finds a page claims it and stays in its COPY. With 30
        # pages and 4 ingest tasks, each claiming one page at a time, all 4 end up waiting.
        # Only COPYs whose task process lives count: a task process killed while it waits
        # leaves its backend waiting too (PostgreSQL notices the lost client when the COPY
        # reads), but holds no slot; its retry takes one, and waits in turn.
        def waiting_in_slots():
            waiting = watch.copies_waiting()
            if len(waiting) < INGEST_TASKS:
                return None
            held = connections_held(apps[1:], server_port, [port for _, port in waiting])
            return held if sum(held.values()) >= INGEST_TASKS else None

        held = watch.wait(f'{INGEST_TASKS} ingest tasks\' COPYs wait for the lock on {staging}', waiting_in_slots,
                          timeout=240)
        all_waiting_at = time.monotonic()
        assert held == {'worker-0': SLOTS_PER_WORKER, 'worker-1': SLOTS_PER_WORKER}, watch.describe()
        # ... and Airflow records the same: every ingest task running, 2 on each worker.
        ingest = [ti for task_id, ti in watch.tasks().items() if task_id.startswith('ingest-')]
        assert [ti['state'] for ti in ingest] == ['running'] * INGEST_TASKS, watch.describe()
        assert collections.Counter(ti['hostname'] for ti in ingest) == dict.fromkeys(WORKERS, SLOTS_PER_WORKER), \
            watch.describe()
        print(f'staging table after {locked - triggered:.0f} s; {INGEST_TASKS} COPYs waiting '
              f'{all_waiting_at - locked:.0f} s later: {watch.describe()}')
        blocker.rollback()  # the lock goes; the ingest tasks carry on

        run = api.wait_run(DAG_ID, run_id, timeout=240)
        assert run['state'] == 'success', watch.describe()
        instances = api.task_instances(DAG_ID, run_id)
        ingest_hosts = {ti['hostname'] for ti in instances if ti['task_id'].startswith('ingest-')}
        assert ingest_hosts == set(WORKERS), instances
        loaded = [reference for (reference,) in watch.query('SELECT omis_order_reference FROM omis_dataset')]
        assert len(loaded) == ROWS  # every row once (the primary key forbids twice) ...
        assert set(loaded) == {record['reference'] for record in source.omis.records()}  # ... and the source's rows
    finally:
        blocker.close()
        watch.close()


def processes_under(pid, word):
    """The live processes under `pid` whose command line has `word`."""
    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if word in ' '.join(process.cmdline()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # gone, or a task's exited child
    return found


def test_a_master_process_dying_stops_the_master_so_the_platform_notices(cloud_foundry):
    _, apps, _, _ = cloud_foundry
    found = processes_under(apps[0].process.pid, 'dag-processor')
    pids = {process.pid for process in found}
    # The dag-processor itself, not its file-parsing children.
    [dag_processor] = [process for process in found if process.ppid() not in pids]
    dag_processor.kill()
    apps[0].process.wait(timeout=90)
    assert apps[0].process.returncode != 0
    assert 'dag-processor exited with code' in apps[0].log_tail()
