"""The environment each deployed process runs with.

Explicit environment variables win over what VCAP_SERVICES gives. Settings from before
Airflow 3 keep working where Airflow 3 has a direct replacement (with a warning), and
fail naming the replacement where it has none. The secrets every component must agree on
are required outside DEBUG, with a clear error at start.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from dataflow import settings
from dataflow.deploy import vcap
from dataflow.errors import ConfigurationError
from dataflow.settings import Settings

log = logging.getLogger(__name__)

MASTER = 'master'
WORKER = 'worker'
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The Datasets pages (dataflow/airflow/ui), loaded by every api-server data-flow starts.
PLUGINS_FOLDER = os.path.join(PACKAGE_ROOT, 'dataflow', 'airflow', 'plugins')

# Old name -> Airflow 3 name, copied over (with a warning) when only the old one is set.
RENAMED = {
    'AIRFLOW__CORE__SQL_ALCHEMY_CONN': 'AIRFLOW__DATABASE__SQL_ALCHEMY_CONN',
    'AIRFLOW__WEBSERVER__SECRET_KEY': 'AIRFLOW__API__SECRET_KEY',
    'AIRFLOW__WEBSERVER__BASE_URL': 'AIRFLOW__API__BASE_URL',
    'AIRFLOW__CORE__DAG_CONCURRENCY': 'AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG',
    'AIRFLOW__SCHEDULER__MAX_THREADS': 'AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES',
}
# Old names with no direct replacement: refused, saying what to use instead.
REMOVED = {
    'AIRFLOW__WEBSERVER__WEB_SERVER_PORT': 'the api-server listens on PORT (AIRFLOW__API__PORT)',
    'AIRFLOW__WEBSERVER__AUTHENTICATE': 'sign-in is SSO through the FAB auth manager: set SSO_PROVIDER and AUTHBROKER_*',
    'AIRFLOW__WEBSERVER__AUTH_BACKEND': 'sign-in is SSO through the FAB auth manager: set SSO_PROVIDER and AUTHBROKER_*',
    'AIRFLOW__API__AUTH_BACKEND': 'sign-in is SSO through the FAB auth manager: set SSO_PROVIDER and AUTHBROKER_*',
}
# Every component must agree on these; a component without one makes up its own.
SHARED_SECRETS = {
    'AIRFLOW__CORE__FERNET_KEY': 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
    'AIRFLOW__API_AUTH__JWT_SECRET': 'python -c "import secrets; print(secrets.token_urlsafe(32))"',
    'AIRFLOW__API__SECRET_KEY': 'python -c "import secrets; print(secrets.token_urlsafe(32))"',
}
# What a worker needs of the master's settings; the rest (the metadata database URL, the
# shared secrets) stays off workers, whose tasks run third-party code.
WORKER_AIRFLOW_SETTINGS = (
    'AIRFLOW__CORE__EXECUTOR', 'AIRFLOW__CORE__EXECUTION_API_SERVER_URL', 'AIRFLOW__CORE__HOSTNAME_CALLABLE',
    'AIRFLOW__CORE__DAGS_FOLDER', 'AIRFLOW__CORE__LOAD_EXAMPLES',
    # A task's supervisor heartbeats at least this often (within 75% of it).
    'AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT',
)
# ... and every setting in these sections, as they are.
WORKER_AIRFLOW_SECTIONS = ('AIRFLOW__CELERY__', 'AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__', 'AIRFLOW__LOGGING__',
                           'AIRFLOW__WORKERS__')
# How soon Airflow notices and mends what infrastructure faults do to a run (the bounds
# they give are in docs/reliability.md); a value the environment sets wins.
RECOVERY_SETTINGS = {
    # A task whose worker stopped heartbeating (the host lost, or cut off) is failed and
    # retried elsewhere after this long (Airflow's default: 300 s); looked for this often.
    'AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT': '60',
    'AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL': '5',
    # A task queued but never started (its message lost with a broker restart, or its
    # worker gone before it began) is queued again after this long (default 600 s),
    # looked for this often (default 120 s), and as many times as it takes (default 2).
    'AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT': '120',
    'AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL': '15',
    'AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES': '30',
    # A worker's calls to the api-server (Variables, heartbeats, states) ride out an
    # api-server restart: up to 15 tries, at most 10 s apart (defaults 5 and 90 s), each
    # waiting 30 s for an answer (default 5 s; the first call after a start takes 5-7 s).
    'AIRFLOW__WORKERS__EXECUTION_API_RETRIES': '15',
    'AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX': '10',
    'AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT': '30',
}
# How soon a run's tasks follow each other (bench/pipeline.py prints a run's timeline); a
# value the environment sets wins.
LATENCY_SETTINGS = {
    # Workers load data-flow's engine once, not once per task (dataflow.airflow.celery_config).
    'AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS': 'dataflow.airflow.celery_config.CELERY_CONFIG',
    # The scheduler looks again this soon when a loop found nothing to do (Airflow's default
    # 1 s): a finished task's successor is queued that much sooner, for a few idle queries
    # more per second.
    'AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME': '0.2',
    # A task's supervisor waits for its process this long at a time (Airflow's default 5 s):
    # when the process closes its sockets before it exits, the supervisor sees the exit only
    # when the wait ends, and the worker slot stays taken until then. Also how often a
    # running task heartbeats: one small call a second per running task.
    'AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL': '1',
}
AUTH_SETTINGS = {
    # Single sign-on through the FAB auth manager, configured by dataflow/web/webserver_config.py.
    'sso': {
        'AIRFLOW__CORE__AUTH_MANAGER': 'airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager',
        'AIRFLOW__FAB__CONFIG_FILE': os.path.join(PACKAGE_ROOT, 'dataflow', 'web', 'webserver_config.py'),
    },
    # No sign-in, every visitor an admin: local development, the demo and tests only.
    'local': {
        'AIRFLOW__CORE__AUTH_MANAGER':
            'airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager',
        'AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS': 'True',
    },
}
LOCAL_AUTH = 'local'  # SSO_PROVIDER=local: no sign-in, needs DEBUG=true
# Airflow's secrets masker hides the value of any key whose name contains one of these
# (case-insensitively). The api-server's access log passes each query parameter through it,
# so 'code' keeps the OAuth code of `/auth/oauth-authorized/<provider>?code=...` out of it.
SENSITIVE_NAMES = 'AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES'
SSO_SENSITIVE_NAMES = ('code',)


def sso_settings(config: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Airflow settings (AIRFLOW__ variables) that SSO mode adds to what AUTH_SETTINGS
    says: sign-ins that last SSO_SESSION_HOURS at most, and the masker's sensitive names.

    A sign-in is FAB's session (its cookie lasts `session_lifetime_minutes` from the last
    request; `session_max_lifetime_minutes` ends it that long after login, however active)
    plus the API tokens the UI gets from it (`[api_auth] jwt_expiration_time`, which FAB
    also caps at what is left of the session). After that the browser goes back to SSO,
    which decides again. A value `environ` already sets is kept (explicit settings win),
    except the sensitive names, which are added to rather than replaced."""
    environ = {} if environ is None else environ
    minutes = str(config.sso_session_hours * 60)
    derived = {
        'AIRFLOW__FAB__SESSION_LIFETIME_MINUTES': minutes,
        'AIRFLOW__FAB__SESSION_MAX_LIFETIME_MINUTES': minutes,
        'AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME': str(config.sso_session_hours * 3600),
    }
    result = {name: environ.get(name) or value for name, value in derived.items()}
    names = [name.strip() for name in environ.get(SENSITIVE_NAMES, '').split(',') if name.strip()]
    result[SENSITIVE_NAMES] = ','.join(names + [name for name in SSO_SENSITIVE_NAMES if name not in names])
    return result


def application(raw: str | None = None) -> dict[str, Any]:
    """VCAP_APPLICATION as a dict ({} outside Cloud Foundry)."""
    raw = settings.current().vcap_application if raw is None else raw
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f'VCAP_APPLICATION is not JSON: {exc}') from None


def hostname() -> str:
    """The name task instances and Celery record for this instance: '<app>-<index>' on
    Cloud Foundry, whose containers all look alike; the host's name elsewhere.
    Airflow calls it through [core] hostname_callable."""
    name = application().get('application_name')
    index = settings.current().cf_instance_index
    if name and index != '':
        return f'{name}-{index}'
    return socket.getfqdn()


def _map_legacy(environ: dict[str, str], warnings: list[str]) -> None:
    for old, new in RENAMED.items():
        if old not in environ:
            continue
        if new in environ and environ[new] != environ[old]:
            raise ConfigurationError(f'{old} and {new} are both set and differ: keep only {new} (Airflow 3)')
        warnings.append(f'{old} is from Airflow 2: use {new}')
        environ[new] = environ.pop(old)
    for old, instead in REMOVED.items():
        if old in environ:
            raise ConfigurationError(f'{old} is not used by Airflow 3: {instead}')


def build(role: str, environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """(environment, warnings) for a master or worker process started with `environ`."""
    environ = dict(settings.process_environment() if environ is None else environ)
    warnings: list[str] = []
    _map_legacy(environ, warnings)
    config = Settings.from_environ(environ)
    for name, value in vcap.settings(config.vcap_services).items():
        environ.setdefault(name, value)

    environ.setdefault('AIRFLOW__CORE__EXECUTOR', 'CeleryExecutor')
    environ.setdefault('AIRFLOW__CORE__DAGS_FOLDER', os.path.join(PACKAGE_ROOT, 'dataflow', 'airflow', 'dags'))
    environ.setdefault('AIRFLOW__CORE__PLUGINS_FOLDER', PLUGINS_FOLDER)
    environ.setdefault('AIRFLOW__CORE__LOAD_EXAMPLES', 'False')
    environ.setdefault('AIRFLOW__CORE__HOSTNAME_CALLABLE', 'dataflow.deploy.environment.hostname')
    for name, value in {**RECOVERY_SETTINGS, **LATENCY_SETTINGS}.items():
        environ.setdefault(name, value)
    environ.setdefault('AIRFLOW_HOME', os.path.join(environ.get('HOME', PACKAGE_ROOT), 'airflow'))
    # Airflow's processes import dataflow from the app's directory.
    environ['PYTHONPATH'] = os.pathsep.join(p for p in (PACKAGE_ROOT, environ.get('PYTHONPATH')) if p)

    master_url = config.dataflow_master_url
    if role == MASTER:
        port = config.port or '8080'
        environ.setdefault('AIRFLOW__API__PORT', port)
        uris = application(config.vcap_application).get('application_uris')
        if 'AIRFLOW__API__BASE_URL' not in environ:
            environ['AIRFLOW__API__BASE_URL'] = f'https://{uris[0]}' if uris else f'http://127.0.0.1:{port}'
        master_url = master_url or f'http://127.0.0.1:{port}'
        for name, value in _auth_settings(config).items():
            environ.setdefault(name, value)
        if config.sso_provider != LOCAL_AUTH:
            environ.update(sso_settings(config, environ))  # already keeps what environ sets
    if master_url:
        environ.setdefault('AIRFLOW__CORE__EXECUTION_API_SERVER_URL', f'{master_url}/execution/')

    missing = [name for name in _required(role, config) if not environ.get(name)]
    if missing:
        raise ConfigurationError(_missing_message(role, missing))
    if role == WORKER:
        environ = _trimmed_for_worker(environ)
    return environ, warnings


def _auth_settings(config: Settings) -> dict[str, str]:
    if config.sso_provider != LOCAL_AUTH:
        # Cloud Foundry's router terminates TLS and says so in X-Forwarded-Proto/Host.
        return {**AUTH_SETTINGS['sso'], 'AIRFLOW__FAB__ENABLE_PROXY_FIX': 'True'}
    if not config.debug:
        raise ConfigurationError('SSO_PROVIDER=local lets anyone in as an admin: it is for local development '
                                 'and needs DEBUG=true')
    return AUTH_SETTINGS['local']


def _required(role: str, config: Settings) -> list[str]:
    needed = ['AIRFLOW__CELERY__BROKER_URL', 'AIRFLOW__CELERY__RESULT_BACKEND', 'AIRFLOW_CONN_DATASETS_DB']
    if role == MASTER:
        needed.append('AIRFLOW__DATABASE__SQL_ALCHEMY_CONN')
        if not config.debug:
            needed += list(SHARED_SECRETS)
    else:
        needed.append('AIRFLOW__CORE__EXECUTION_API_SERVER_URL')
    return needed


def _missing_message(role: str, missing: list[str]) -> str:
    lines = [f'the {role} cannot start; these settings are missing:']
    for name in missing:
        if name in SHARED_SECRETS:
            lines.append(f'  {name}: every component must share it; make one with {SHARED_SECRETS[name]}')
        elif name == 'AIRFLOW__CORE__EXECUTION_API_SERVER_URL':
            lines.append(f'  {name}: set DATAFLOW_MASTER_URL to the master\'s internal URL '
                         '(e.g. http://data-flow.apps.internal:8080)')
        else:
            lines.append(f'  {name}: bind a PostgreSQL/Redis service, or set it')
    return '\n'.join(lines)


def _trimmed_for_worker(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items()
            if not k.startswith('AIRFLOW__') or k in WORKER_AIRFLOW_SETTINGS or k.startswith(WORKER_AIRFLOW_SECTIONS)}
