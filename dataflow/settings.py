"""Every environment variable data-flow reads is read here, and nowhere else.

`Settings.from_environ()` reads them all at once into one frozen object, checking each
value; a wrong one is a ConfigurationError naming the variable. `current()` is the
process's settings, read on first use. The deploy builder reads the environment of the
processes it starts through `Settings.from_environ(environ)` too, so each variable has
one reading and one meaning.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from dataflow.errors import ConfigurationError

_TRUE = ('1', 'true', 'yes', 'on')
_FALSE = ('0', 'false', 'no', 'off')
# PAGE_STORE: Airflow Variables, or the URL of an object store's directory.
PAGE_STORE_VARIABLES = 'variables'
_PAGE_STORE_FORMS = 'variables, file:///absolute/directory or s3://bucket/prefix'


class _Reader:
    """Typed reads of one environment, each refusing a value it cannot use."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str, default: str = '') -> str:
        return self.environ.get(name, default)

    def url(self, name: str, default: str = '') -> str:
        return self.text(name, default).rstrip('/')

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self.environ.get(name)
        if raw is None or raw == '':
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f'{name} must be a whole number, got {raw!r}') from None
        if minimum is not None and value < minimum:
            raise ConfigurationError(f'{name} must be at least {minimum}, got {value}')
        return value

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        raw = self.environ.get(name)
        if raw is None or raw == '':
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f'{name} must be a number, got {raw!r}') from None
        if value < minimum:
            raise ConfigurationError(f'{name} must be at least {minimum}, got {value}')
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name)
        if raw is None or raw == '':
            return default
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(f'{name} must be true or false, got {raw!r}')

    def page_store(self, name: str, conn_name: str) -> tuple[str, str]:
        """(store, connection id): `variables`, or a file:///absolute or s3://bucket URL
        with the Airflow connection (optional) that reaches it."""
        raw = self.text(name, PAGE_STORE_VARIABLES).strip()
        conn_id = self.text(conn_name).strip()
        if raw.lower() in ('', PAGE_STORE_VARIABLES):
            if conn_id:
                raise ConfigurationError(f'{conn_name} is {conn_id!r}, but {name} is {PAGE_STORE_VARIABLES}: '
                                         'a connection is for an object store (file:// or s3://)')
            return PAGE_STORE_VARIABLES, ''
        url = urllib.parse.urlsplit(raw)
        if url.username is not None or url.password is not None:
            # Never echo what may be a password; a connection holds credentials.
            shown = urllib.parse.urlunsplit(url._replace(netloc='***@' + url.netloc.rpartition('@')[2]))
            raise ConfigurationError(f'{name} must not hold credentials or a connection id ({shown}); '
                                     f'name an Airflow connection in {conn_name}')
        if url.scheme == 'file':
            if url.netloc or not url.path.startswith('/'):
                raise ConfigurationError(f'{name} must name an absolute directory, file:///path (three slashes), '
                                         f'got {raw!r}')
        elif url.scheme == 's3':
            if not url.netloc:
                raise ConfigurationError(f'{name} must name a bucket, s3://bucket/prefix, got {raw!r}')
        elif not url.scheme:
            hint = f' (file://{raw}?)' if raw.startswith('/') else ''
            raise ConfigurationError(f'{name} must be {_PAGE_STORE_FORMS}, got {raw!r}{hint}')
        else:
            raise ConfigurationError(f'{name}: unknown scheme {url.scheme!r} in {raw!r}; use {_PAGE_STORE_FORMS}')
        if url.query or url.fragment:
            raise ConfigurationError(f'{name} must be a URL with no query or fragment, got {raw!r}')
        return urllib.parse.urlunsplit(url), conn_id  # the scheme in lower case


@dataclass(frozen=True)
class Settings:
    """What each variable means is said where it is read, in `from_environ`."""

    debug: bool
    datahub_base_url: str
    hawk_id: str
    hawk_key: str
    hawk_algorithm: str
    source_connect_timeout: float
    source_read_timeout: float
    source_max_attempts: int
    source_backoff_base: float
    source_backoff_max: float
    ingest_task_concurrency: int
    swap_lock_timeout_ms: int
    swap_attempts: int
    financial_year_first_month_day: str
    airflow_conn_datasets_db: str
    postgres_admin_url: str
    dataflow_state_dir: str
    ingest_poll_max_seconds: float
    ingest_idle_reschedule_seconds: float
    fetch_stall_seconds: float
    datasets_db_retry_seconds: float
    task_retries: int
    task_retry_delay_seconds: float
    redis_url: str
    pipeline_schedules_enabled: bool
    pipeline_packages: tuple[str, ...]
    sso_provider: str
    authbroker_url: str
    authbroker_client_id: str
    authbroker_client_secret: str
    authbroker_allowed_domains: str
    oidc_discovery_url: str
    oidc_client_id: str
    oidc_client_secret: str
    sso_default_role: str
    sso_admin_emails: str
    sso_session_hours: int
    vcap_services: str
    vcap_application: str
    cf_instance_index: str
    port: str
    dataflow_master_url: str
    page_store: str
    page_store_conn_id: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        read = _Reader(os.environ if environ is None else environ)
        page_store, page_store_conn_id = read.page_store('PAGE_STORE', 'PAGE_STORE_CONN_ID')
        return cls(
            debug=read.flag('DEBUG', False),
            # The source API (Data Hub) and its Hawk credentials: the default source connection.
            datahub_base_url=read.url('DATAHUB_BASE_URL', 'http://127.0.0.1:8100'),
            hawk_id=read.text('HAWK_ID'),
            hawk_key=read.text('HAWK_KEY'),
            hawk_algorithm=read.text('HAWK_ALGORITHM', 'sha256'),
            # Source paging: (connect, read) timeouts per request, attempts, backoff.
            source_connect_timeout=read.number('SOURCE_CONNECT_TIMEOUT', 10.0),
            source_read_timeout=read.number('SOURCE_READ_TIMEOUT', 120.0),
            source_max_attempts=read.integer('SOURCE_MAX_ATTEMPTS', 5, minimum=1),
            source_backoff_base=read.number('SOURCE_BACKOFF_BASE', 1.0),
            source_backoff_max=read.number('SOURCE_BACKOFF_MAX', 60.0),
            ingest_task_concurrency=read.integer('INGEST_TASK_CONCURRENCY', 4, minimum=1),
            # How long the swap waits for readers' locks before giving up an attempt, and how
            # many attempts it makes: a waiting ACCESS EXCLUSIVE lock queues every new reader.
            swap_lock_timeout_ms=read.integer('SWAP_LOCK_TIMEOUT_MS', 5000, minimum=1),
            swap_attempts=read.integer('SWAP_ATTEMPTS', 5, minimum=1),
            # Views: the first month and day of the financial year, MM-DD. Parsed (and refused
            # with a clear error) where views use it, so that a bad value cannot stop dataset
            # pipelines from loading.
            financial_year_first_month_day=read.text('FINANCIAL_YEAR_FIRST_MONTH_DAY', '04-01'),
            # Whether the `datasets_db` connection is in the environment (the usual way): the
            # `dataflow` command falls back to a demo's recorded database when it is not.
            airflow_conn_datasets_db=read.text('AIRFLOW_CONN_DATASETS_DB'),
            # Local development, demo and tests: the PostgreSQL server to create databases on;
            # an embedded one is started when it cannot be reached (devstack).
            postgres_admin_url=read.text('POSTGRES_ADMIN_URL', 'postgresql://postgres@127.0.0.1:5432/postgres'),
            # Where the demo and embedded servers keep their state.
            dataflow_state_dir=read.text('DATAFLOW_STATE_DIR', os.path.join(os.getcwd(), '.dataflow')),
            # Ingest tasks: how long they wait between looks for a new page (the wait doubles
            # from 0.1 s up to this), and after how long with nothing to load they hand their
            # worker slot back (the task is rescheduled), so that fetch is never starved.
            ingest_poll_max_seconds=read.number('INGEST_POLL_MAX_SECONDS', 2.0, minimum=0.01),
            ingest_idle_reschedule_seconds=read.number('INGEST_IDLE_RESCHEDULE_SECONDS', 30.0, minimum=1.0),
            # An ingest task gives up when fetch has reported no progress for this long.
            fetch_stall_seconds=read.number('FETCH_STALL_SECONDS', 900.0, minimum=1.0),
            # How long an ingest task keeps reconnecting when it loses the datasets database
            # (a restart, a failover) before it fails and leaves the page to Airflow's retry.
            datasets_db_retry_seconds=read.number('DATASETS_DB_RETRY_SECONDS', 120.0),
            # Airflow retries of each task, and the wait before a retry.
            task_retries=read.integer('TASK_RETRIES', 2, minimum=0),
            task_retry_delay_seconds=read.number('TASK_RETRY_DELAY_SECONDS', 30.0),
            # Local development, demo and tests: the Redis for Celery; embedded when unreachable.
            redis_url=read.text('REDIS_URL', 'redis://127.0.0.1:6379/0'),
            # False: every pipeline DAG runs only when triggered (the demo, tests, benchmarks).
            pipeline_schedules_enabled=read.flag('PIPELINE_SCHEDULES_ENABLED', True),
            # The Python packages whose modules hold pipeline classes (comma-separated): data-flow's
            # own, and a team's that lives elsewhere on the path.
            pipeline_packages=tuple(p.strip() for p in read.text('PIPELINE_PACKAGES', 'dataflow.pipelines').split(',')
                                    if p.strip()),
            # Single sign-on (dataflow/web): 'authbroker' (Staff SSO), 'oidc', or 'local'.
            sso_provider=read.text('SSO_PROVIDER', 'authbroker').strip().lower(),
            authbroker_url=read.url('AUTHBROKER_URL'),
            authbroker_client_id=read.text('AUTHBROKER_CLIENT_ID'),
            authbroker_client_secret=read.text('AUTHBROKER_CLIENT_SECRET'),
            # Comma-separated email domains allowed in, matched exactly (case-insensitively)
            # against the part of the email after its last '@'. Applies to both providers.
            authbroker_allowed_domains=read.text('AUTHBROKER_ALLOWED_DOMAINS'),
            oidc_discovery_url=read.text('OIDC_DISCOVERY_URL'),
            oidc_client_id=read.text('OIDC_CLIENT_ID'),
            oidc_client_secret=read.text('OIDC_CLIENT_SECRET'),
            # The role of a user's first login; the emails (comma-separated) that are made Admin.
            sso_default_role=read.text('SSO_DEFAULT_ROLE', 'Viewer'),
            sso_admin_emails=read.text('SSO_ADMIN_EMAILS'),
            # How long a sign-in lasts, however active the user is (then they sign in again,
            # and SSO decides again): the UI session and the API tokens it hands out
            # (dataflow.deploy.environment.sso_settings).
            sso_session_hours=read.integer('SSO_SESSION_HOURS', 8, minimum=1),
            # Cloud Foundry: bound services, the app and the instance (dataflow/deploy).
            vcap_services=read.text('VCAP_SERVICES'),
            vcap_application=read.text('VCAP_APPLICATION'),
            cf_instance_index=read.text('CF_INSTANCE_INDEX'),
            port=read.text('PORT'),
            # Where workers reach the master's api-server (its execution API), e.g. a Cloud
            # Foundry internal route: http://data-flow.apps.internal:8080.
            dataflow_master_url=read.url('DATAFLOW_MASTER_URL'),
            # Where fetch hands pages to the ingest tasks (dataflow.airflow.pagestore): Airflow
            # Variables, or objects under a directory every worker reaches, file:///dir or
            # s3://bucket/prefix; the Airflow connection of the latter, if any (an aws one).
            page_store=page_store,
            page_store_conn_id=page_store_conn_id,
        )


_current: Settings | None = None


def current() -> Settings:
    """This process's settings, read from its environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_environ()
    return _current


def replaced(**changes: object) -> Settings:
    """The current settings with some values changed (for tests and tools that pass them on)."""
    return dataclasses.replace(current(), **changes)  # type: ignore[arg-type]


def process_environment() -> dict[str, str]:
    """The environment that Airflow's processes are started with; dataflow.deploy adds the
    settings it derives (from VCAP_SERVICES and the above) to it."""
    return dict(os.environ)
