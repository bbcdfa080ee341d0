"""Cloud Foundry, simulated on this machine: the master app from Procfile-master and two
worker apps from Procfile-worker (run with honcho, as the buildpack runs a Procfile), each
with its own home directory, CF's environment (VCAP_SERVICES pointing at the local
PostgreSQL and Redis, VCAP_APPLICATION, CF_INSTANCE_INDEX, PORT) and only the settings
that app would be given."""

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

from dataflow.demo import services
from dataflow.demo.airflow_stack import AirflowApi
from dataflow.demo.omis_records import omis_record
from dataflow.demo.source_api import DemoSource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
            AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT='30',
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
            [sys.executable, '-m', 'dataflow.deploy', 'airflow', 'users', 'create', '--username', 'operator',
             '--password', password, '--role', 'Admin', '--email', 'operator@trade.gov.uk', '--firstname', 'Op',
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


def test_a_pipeline_triggered_on_the_master_runs_on_both_workers(cloud_foundry):
    # The workers run with a worker's trimmed environment (no metadata database URL, no
    # shared secrets: tests/deploy/test_environment.py), and still do the whole job.
    api, apps, source, dsn = cloud_foundry
    source.put(*(omis_record(i) for i in range(ROWS)))
    api.wait_dag(DAG_ID)
    api.unpause(DAG_ID)
    run_id = f'cf-{secrets.token_hex(4)}'
    api.trigger(DAG_ID, run_id=run_id)
    run = api.wait_run(DAG_ID, run_id, timeout=300)
    instances = api.task_instances(DAG_ID, run_id)
    assert run['state'] == 'success', {ti['task_id']: ti['state'] for ti in instances}
    ingest_hosts = {ti['hostname'] for ti in instances if ti['task_id'].startswith('ingest-')}
    assert ingest_hosts == {'data-flow-worker-0', 'data-flow-worker-1'}, instances
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM omis_dataset')
        assert cursor.fetchone() == (ROWS,)
    conn.close()


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
