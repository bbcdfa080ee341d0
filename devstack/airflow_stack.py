"""A local Airflow 3 stack for the demo, the end-to-end tests and the benchmark:
api-server, scheduler, dag-processor and a Celery worker, each its own process group,
sharing one AIRFLOW_HOME, metadata database and Redis broker.

The settings every component needs (see shared/airflow3-field-notes.md) are set
identically for all of them. Log servers are not started (they would listen on every
interface); the components share AIRFLOW_HOME/logs, where the api-server reads task logs.
"""

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time

import requests
from cryptography.fernet import Fernet

import dataflow.airflow
from dataflow.deploy.environment import (AUTH_SETTINGS, LATENCY_SETTINGS, PLUGINS_FOLDER, RECOVERY_SETTINGS,
                                         sso_settings)
from dataflow.settings import Settings

log = logging.getLogger(__name__)

DAGS_FOLDER = os.path.join(os.path.dirname(os.path.abspath(dataflow.airflow.__file__)), 'dags')

COMPONENTS = {
    'api-server': ['api-server'],
    'scheduler': ['scheduler', '--skip-serve-logs'],
    'dag-processor': ['dag-processor'],
    # No task defers yet, but the UI's home page reports on the triggerer's health.
    'triggerer': ['triggerer', '--skip-serve-logs'],
    'worker': ['celery', 'worker', '--skip-serve-logs'],
}


def _airflow_command():
    return [os.path.join(os.path.dirname(sys.executable), 'airflow')]


class AirflowStack:
    def __init__(self, home, metadata_url, broker_url, port, *, worker_concurrency=2, env=None,
                 broker_key_prefix=None, components=tuple(COMPONENTS), dags_folder=DAGS_FOLDER, auth='local',
                 host='127.0.0.1'):
        self.home = home
        self.port = port
        self.broker_url, self.broker_key_prefix = broker_url, broker_key_prefix
        # `host`: where the api-server listens, and workers (in network namespaces of a
        # test's own, say) reach it.
        self.base_url = f'http://{host}:{port}'
        self.components = components
        self.processes = {}
        os.makedirs(os.path.join(home, 'logs'), exist_ok=True)
        sqlalchemy_url = metadata_url.replace('postgresql://', 'postgresql+psycopg2://', 1)
        self.env = {
            **os.environ,
            'AIRFLOW_HOME': home,
            'AIRFLOW__CORE__EXECUTOR': 'CeleryExecutor',
            'AIRFLOW__DATABASE__SQL_ALCHEMY_CONN': sqlalchemy_url,
            'AIRFLOW__CELERY__BROKER_URL': broker_url,
            'AIRFLOW__CELERY__RESULT_BACKEND': 'db+' + metadata_url,
            'AIRFLOW__CELERY__WORKER_CONCURRENCY': str(worker_concurrency),
            'AIRFLOW__CORE__FERNET_KEY': Fernet.generate_key().decode(),
            'AIRFLOW__API_AUTH__JWT_SECRET': secrets.token_urlsafe(32),
            'AIRFLOW__API__SECRET_KEY': secrets.token_urlsafe(32),
            'AIRFLOW__API__HOST': host,
            'AIRFLOW__API__PORT': str(port),
            'AIRFLOW__API__BASE_URL': self.base_url,
            'AIRFLOW__CORE__EXECUTION_API_SERVER_URL': f'{self.base_url}/execution/',
            'AIRFLOW__CORE__DAGS_FOLDER': dags_folder,
            'AIRFLOW__CORE__PLUGINS_FOLDER': PLUGINS_FOLDER,
            'AIRFLOW__CORE__LOAD_EXAMPLES': 'False',
            'AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION': 'False',
            **AUTH_SETTINGS[auth],
            'AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL': '5',
            'AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL': '10',
            'AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL': '2',
            **RECOVERY_SETTINGS,
            **LATENCY_SETTINGS,
            'AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC': '2',
            'AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK': 'False',
        }
        if broker_key_prefix:
            # Keeps this stack's Celery keys apart from others sharing the Redis server.
            self.env['AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX'] = broker_key_prefix
        self.env.update(env or {})
        if auth == 'sso':
            # As deployed: sessions of SSO_SESSION_HOURS, the OAuth code masked in the access log.
            self.env.update(sso_settings(Settings.from_environ(self.env), self.env))

    def log_path(self, component):
        return os.path.join(self.home, 'logs', f'{component}.out')

    def airflow(self, *args, timeout=600):
        """Run an `airflow` CLI command with this stack's settings."""
        return subprocess.run(_airflow_command() + list(args), env=self.env, check=True, timeout=timeout,
                              capture_output=True, text=True)

    def start(self, timeout=180):
        started = time.monotonic()
        self.airflow('db', 'migrate')
        log.info('Airflow metadata database migrated in %.1f s', time.monotonic() - started)
        for name in self.components:
            self.start_component(name)
        self.api = AirflowApi(self.base_url)
        healthy = [c.replace('-', '_') for c in ('scheduler', 'dag-processor', 'triggerer') if c in self.components]
        self.api.wait_healthy(timeout=timeout, check=self._check_alive, components=('metadatabase', *healthy))
        log.info('Airflow stack up in %.1f s at %s', time.monotonic() - started, self.base_url)
        return self

    def start_component(self, name, env=None, command=None, prefix=()):
        """Start a component (`command`: its `airflow` arguments, COMPONENTS[name] by default),
        run through `prefix` if given (e.g. `ip netns exec <namespace>`)."""
        with open(self.log_path(name), 'ab') as out:
            self.processes[name] = subprocess.Popen(
                [*prefix, *_airflow_command(), *(command or COMPONENTS[name])], env={**self.env, **(env or {})},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def start_worker(self, index, prefix=()):
        """Start Celery worker `worker-<index>`, named as Cloud Foundry's instance `index` of
        an app `data-flow-worker` is (data-flow-worker-<index>, dataflow.deploy.environment)."""
        name = f'worker-{index}'
        self.start_component(name, command=[*COMPONENTS['worker'], '--celery-hostname', f'data-flow-worker-{index}@%h'],
                             prefix=prefix, env={
                                 'VCAP_APPLICATION': json.dumps({'application_name': 'data-flow-worker'}),
                                 'CF_INSTANCE_INDEX': str(index),
                                 'AIRFLOW__CORE__HOSTNAME_CALLABLE': 'dataflow.deploy.environment.hostname',
                             })
        return name

    def kill_component(self, name):
        """SIGKILL every process of a component, its children's children too, as the loss of
        its host would end them: all stopped first, so none sees another go and reacts."""
        import psutil

        process = self.processes.pop(name)
        try:
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for signal_ in (signal.SIGSTOP, signal.SIGKILL):
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(signal_)
        process.wait(timeout=30)
        return [member.pid for member in tree]

    def _check_alive(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                with open(self.log_path(name), errors='replace') as out:
                    tail = out.read()[-3000:]
                raise RuntimeError(f'Airflow {name} exited with {process.returncode}:\n{tail}')

    def stop_component(self, name, timeout=60):
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def stop(self):
        # Workers first: they wait for running tasks, which need the api-server.
        for name in sorted(self.processes, key=lambda n: not n.startswith('worker')):
            self.stop_component(name, timeout=30)
        if self.broker_key_prefix:
            self._forget_broker_keys()

    def _forget_broker_keys(self):
        """Delete this stack's Celery keys from a Redis it may share with others."""
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=5)
        try:
            for key in client.scan_iter(match=self.broker_key_prefix + '*'):
                client.delete(key)
        except redis.RedisError as exc:
            log.warning('Could not delete the Celery keys under %s: %s', self.broker_key_prefix, exc)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


class AirflowApi:
    """The REST API (/api/v2) of an api-server: in local mode with no credentials, else
    with a database user's username and password."""

    def __init__(self, base_url, username=None, password=None):
        self.base_url = base_url.rstrip('/')
        self.session = requests.Session()
        self.credentials = (username, password) if username else None

    def _request(self, method, path, **kwargs):
        response = self.session.request(method, f'{self.base_url}/api/v2{path}', timeout=30, **kwargs)
        if response.status_code == 401 and 'Authorization' not in self.session.headers:
            self._authenticate()
            response = self.session.request(method, f'{self.base_url}/api/v2{path}', timeout=30, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f'{method} {path}: HTTP {response.status_code}: {response.text[:500]}')
        return response.json() if response.content else None

    def _authenticate(self):
        if self.credentials:
            username, password = self.credentials
            response = self.session.post(f'{self.base_url}/auth/token', timeout=30,
                                         json={'username': username, 'password': password})
        else:
            response = self.session.get(f'{self.base_url}/auth/token', timeout=30)
        response.raise_for_status()
        self.session.headers['Authorization'] = f'Bearer {response.json()["access_token"]}'

    def wait_healthy(self, timeout=180, check=lambda: None, components=('metadatabase', 'scheduler', 'dag_processor')):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            check()
            try:
                health = self.session.get(f'{self.base_url}/api/v2/monitor/health', timeout=5).json()
                last = health
                if all(health.get(c, {}).get('status') == 'healthy' for c in components):
                    return health
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f'Airflow not healthy after {timeout} s: {last}')

    def wait_dag(self, dag_id, timeout=180):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request('GET', f'/dags/{dag_id}')
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def import_errors(self):
        return self._request('GET', '/importErrors')['import_errors']

    def unpause(self, dag_id):
        return self._request('PATCH', f'/dags/{dag_id}', json={'is_paused': False})

    def dag_runs(self, dag_id):
        return self._request('GET', f'/dags/{dag_id}/dagRuns', params={'limit': 100})['dag_runs']

    def wait_runs_finished(self, dag_id, count, timeout=300):
        """Wait until `dag_id` has at least `count` runs and none is unfinished; return them."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.dag_runs(dag_id)
            if len(runs) >= count and all(r['state'] in ('success', 'failed') for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f'{dag_id}: runs not finished after {timeout} s: '
                                   f'{[(r["dag_run_id"], r["state"]) for r in runs]}')
            time.sleep(1)

    def trigger(self, dag_id, run_id=None, conf=None):
        body = {'logical_date': None, 'conf': conf or {}}
        if run_id:
            body['dag_run_id'] = run_id
        return self._request('POST', f'/dags/{dag_id}/dagRuns', json=body)

    def dag_run(self, dag_id, run_id):
        return self._request('GET', f'/dags/{dag_id}/dagRuns/{run_id}')

    def wait_run(self, dag_id, run_id, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run['state'] in ('success', 'failed'):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f'{dag_id} run {run_id} still {run["state"]} after {timeout} s: '
                                   f'{self.task_states(dag_id, run_id)}')
            time.sleep(0.5)

    def task_instances(self, dag_id, run_id):
        return self._request('GET', f'/dags/{dag_id}/dagRuns/{run_id}/taskInstances')['task_instances']

    def task_states(self, dag_id, run_id):
        return {ti['task_id']: ti['state'] for ti in self.task_instances(dag_id, run_id)}

    def xcom(self, dag_id, run_id, task_id, key='return_value'):
        return self._request(
            'GET', f'/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}'
        )['value']

    def set_connection(self, conn_id, conn_type='http', **fields):
        """Create the connection `conn_id` in Airflow's metastore, or replace its fields."""
        body = {'connection_id': conn_id, 'conn_type': conn_type, **fields}
        try:
            return self._request('PATCH', f'/connections/{conn_id}', json=body)
        except RuntimeError as exc:
            if 'HTTP 404' not in str(exc):
                raise
            return self._request('POST', '/connections', json=body)

    def dag(self, dag_id):
        return self._request('GET', f'/dags/{dag_id}')

    def assets(self):
        return self._request('GET', '/assets', params={'limit': 1000})['assets']

    def asset_events(self, asset_id):
        return self._request('GET', '/assets/events', params={'asset_id': asset_id, 'limit': 1000,
                                                              'order_by': 'timestamp'})['asset_events']

    def task_tries(self, dag_id, run_id, task_id):
        """Every try of a task instance: try_number, state, hostname, ..."""
        return self._request('GET', f'/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries',
                             params={'limit': 100})['task_instances']

    def variables(self):
        return self._request('GET', '/variables', params={'limit': 1000})['variables']

    def task_log(self, dag_id, run_id, task_id, try_number=None):
        """The text of a task's log: one line per event, each exception as `Type: message`
        (its causes too); every try's unless `try_number` is given."""
        if try_number is None:
            [instance] = [ti for ti in self.task_instances(dag_id, run_id) if ti['task_id'] == task_id]
            tries = range(1, max(instance['try_number'], 1) + 1)
        else:
            tries = [try_number]
        lines = []
        for number in tries:
            logged = self._request('GET', f'/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{number}',
                                   headers={'Accept': 'application/json'})
            for event in logged['content']:
                lines.append(str(event.get('event', '')))
                for error in event.get('error_detail') or ():
                    lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
        return '\n'.join(lines)
