"""Every environment variable data-flow reads is read here, and nowhere else.

Values are read once, at import. Tests that need other values set the environment
before importing, or patch the attribute on this module.
"""

import os


class ConfigurationError(ValueError):
    """An environment variable has a value data-flow cannot use."""


def _int(name, default, minimum=None):
    raw = os.environ.get(name)
    if raw is None or raw == '':
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f'{name} must be a whole number, got {raw!r}') from None
    if minimum is not None and value < minimum:
        raise ConfigurationError(f'{name} must be at least {minimum}, got {value}')
    return value


def _float(name, default, minimum=0.0):
    raw = os.environ.get(name)
    if raw is None or raw == '':
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f'{name} must be a number, got {raw!r}') from None
    if value < minimum:
        raise ConfigurationError(f'{name} must be at least {minimum}, got {value}')
    return value


def _bool(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == '':
        return default
    lowered = raw.strip().lower()
    if lowered in ('1', 'true', 'yes', 'on'):
        return True
    if lowered in ('0', 'false', 'no', 'off'):
        return False
    raise ConfigurationError(f'{name} must be true or false, got {raw!r}')


DEBUG = _bool('DEBUG', False)

# Source API (Data Hub) and its Hawk credentials.
DATAHUB_BASE_URL = os.environ.get('DATAHUB_BASE_URL', 'http://127.0.0.1:8100').rstrip('/')
HAWK_ID = os.environ.get('HAWK_ID', '')
HAWK_KEY = os.environ.get('HAWK_KEY', '')
HAWK_ALGORITHM = os.environ.get('HAWK_ALGORITHM', 'sha256')

# Source paging: timeouts are (connect, read) seconds per request.
SOURCE_CONNECT_TIMEOUT = _float('SOURCE_CONNECT_TIMEOUT', 10.0)
SOURCE_READ_TIMEOUT = _float('SOURCE_READ_TIMEOUT', 120.0)
SOURCE_MAX_ATTEMPTS = _int('SOURCE_MAX_ATTEMPTS', 5, minimum=1)
SOURCE_BACKOFF_BASE = _float('SOURCE_BACKOFF_BASE', 1.0)
SOURCE_BACKOFF_MAX = _float('SOURCE_BACKOFF_MAX', 60.0)

# Loading.
INGEST_TASK_CONCURRENCY = _int('INGEST_TASK_CONCURRENCY', 4, minimum=1)
# How long the swap waits for readers' locks before giving up an attempt, and how
# many attempts it makes: a waiting ACCESS EXCLUSIVE lock queues every new reader.
SWAP_LOCK_TIMEOUT_MS = _int('SWAP_LOCK_TIMEOUT_MS', 5000, minimum=1)
SWAP_ATTEMPTS = _int('SWAP_ATTEMPTS', 5, minimum=1)

# Views: the first month and day of the financial year, MM-DD.
# Parsed (and refused with a clear error) where views use it, so that a bad value
# cannot stop dataset pipelines from loading.
FINANCIAL_YEAR_FIRST_MONTH_DAY = os.environ.get('FINANCIAL_YEAR_FIRST_MONTH_DAY', '04-01')

# The datasets database: the Airflow connection id pipelines name in `target_db`
# resolves through AIRFLOW_CONN_<ID>; DATASETS_DB_URL is the fallback outside Airflow.
DATASETS_DB_URL = os.environ.get('DATASETS_DB_URL', '')
# Whether the `datasets_db` connection is set in the environment (the usual way); the
# `dataflow` command falls back to a demo's recorded database when it is not.
AIRFLOW_CONN_DATASETS_DB = os.environ.get('AIRFLOW_CONN_DATASETS_DB', '')

# Local development, demo and tests: the PostgreSQL server to create databases on.
# When it cannot be reached, an embedded server is started instead (dataflow.demo.services).
POSTGRES_ADMIN_URL = os.environ.get('POSTGRES_ADMIN_URL', 'postgresql://postgres@127.0.0.1:5432/postgres')
# Where embedded servers keep their data.
DATAFLOW_STATE_DIR = os.environ.get('DATAFLOW_STATE_DIR', os.path.join(os.getcwd(), '.dataflow'))

# Ingest tasks: how long they wait between looks for a new page (the wait doubles from
# 0.1 s up to this), and after how long with nothing to load they hand their worker slot
# back (the task is rescheduled), so that fetch is never starved of a slot.
INGEST_POLL_MAX_SECONDS = _float('INGEST_POLL_MAX_SECONDS', 2.0, minimum=0.01)
INGEST_IDLE_RESCHEDULE_SECONDS = _float('INGEST_IDLE_RESCHEDULE_SECONDS', 30.0, minimum=1.0)
# An ingest task gives up when fetch has reported no progress for this long.
FETCH_STALL_SECONDS = _float('FETCH_STALL_SECONDS', 900.0, minimum=1.0)
# Airflow retries of each task, and the wait before a retry.
TASK_RETRIES = _int('TASK_RETRIES', 2, minimum=0)
TASK_RETRY_DELAY_SECONDS = _float('TASK_RETRY_DELAY_SECONDS', 30.0)
# Local development, demo and tests: the Redis server for Celery; an embedded one is
# started when it cannot be reached.
REDIS_URL = os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/0')
# False: every pipeline DAG runs only when triggered (the demo, tests and benchmarks).
PIPELINE_SCHEDULES_ENABLED = _bool('PIPELINE_SCHEDULES_ENABLED', True)

# Single sign-on for the web UI and API (FAB auth manager; see dataflow/webserver_config.py).
# SSO_PROVIDER: 'authbroker' (Staff SSO, the default) or 'oidc' (any OpenID Connect provider).
SSO_PROVIDER = os.environ.get('SSO_PROVIDER', 'authbroker').strip().lower()
AUTHBROKER_URL = os.environ.get('AUTHBROKER_URL', '').rstrip('/')
AUTHBROKER_CLIENT_ID = os.environ.get('AUTHBROKER_CLIENT_ID', '')
AUTHBROKER_CLIENT_SECRET = os.environ.get('AUTHBROKER_CLIENT_SECRET', '')
# Comma-separated email domains allowed in, matched exactly (case-insensitively) against
# the part of the email after its last '@'. Applies to both providers.
AUTHBROKER_ALLOWED_DOMAINS = os.environ.get('AUTHBROKER_ALLOWED_DOMAINS', '')
OIDC_DISCOVERY_URL = os.environ.get('OIDC_DISCOVERY_URL', '')
OIDC_CLIENT_ID = os.environ.get('OIDC_CLIENT_ID', '')
OIDC_CLIENT_SECRET = os.environ.get('OIDC_CLIENT_SECRET', '')
# The role of a user's first login; the emails (comma-separated) that are made Admin.
SSO_DEFAULT_ROLE = os.environ.get('SSO_DEFAULT_ROLE', 'Viewer')
SSO_ADMIN_EMAILS = os.environ.get('SSO_ADMIN_EMAILS', '')

# Cloud Foundry: bound services, the app and the instance (see dataflow/deploy).
VCAP_SERVICES = os.environ.get('VCAP_SERVICES', '')
VCAP_APPLICATION = os.environ.get('VCAP_APPLICATION', '')
CF_INSTANCE_INDEX = os.environ.get('CF_INSTANCE_INDEX', '')
PORT = os.environ.get('PORT', '')
# Where workers reach the master's api-server (its execution API), e.g. a Cloud Foundry
# internal route: http://data-flow.apps.internal:8080.
DATAFLOW_MASTER_URL = os.environ.get('DATAFLOW_MASTER_URL', '').rstrip('/')


def process_environment():
    """The environment that Airflow's processes are started with; dataflow.deploy adds
    the settings it derives (from VCAP_SERVICES and the above) to it."""
    return dict(os.environ)
