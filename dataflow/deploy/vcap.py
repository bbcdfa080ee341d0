"""Airflow settings from Cloud Foundry's VCAP_SERVICES.

The first bound PostgreSQL service gives Airflow's metadata database, the Celery result
backend and the datasets database connection (`datasets_db`); the first Redis service
gives the Celery broker; a bound S3 bucket, if any, gives remote task logs. Connection
URLs are built from the credentials' parts with every part URL-escaped, so passwords
with '@', '/', '%' or ':' survive.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from dataflow.errors import ConfigurationError

Service = dict[str, Any]

POSTGRES_LABELS = ('postgres', 'postgresql', 'elephantsql')
REDIS_LABELS = ('redis',)
S3_LABELS = ('aws-s3-bucket',)
LOGS_CONNECTION_ID = 'dataflow_logs_s3'


def parse(raw: str) -> dict[str, list[Service]]:
    """The services in a VCAP_SERVICES value: {label: [service, ...]}."""
    if not raw:
        return {}
    try:
        services = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f'VCAP_SERVICES is not JSON: {exc}') from None
    if not isinstance(services, dict):
        raise ConfigurationError('VCAP_SERVICES must be a JSON object of service lists')
    return services


def _first(services: dict[str, list[Service]], labels: tuple[str, ...]) -> Service | None:
    for label in labels:
        for service in services.get(label) or ():
            return service
    return None


def _quote(value: object) -> str:
    return urllib.parse.quote(str(value), safe='')


def _credentials(service: Service, what: str) -> dict[str, Any]:
    credentials = service.get('credentials') or {}
    if not credentials:
        raise ConfigurationError(f'VCAP_SERVICES: the {what} service {service.get("name")!r} has no credentials')
    return credentials


def _from_uri(uri: str, what: str, name: str | None) -> dict[str, Any]:
    parsed = urllib.parse.urlsplit(uri)
    if not parsed.hostname:
        raise ConfigurationError(f'VCAP_SERVICES: the {what} service {name!r} has no host in its uri')
    return {
        'host': parsed.hostname, 'port': parsed.port,
        'username': urllib.parse.unquote(parsed.username or ''), 'password': urllib.parse.unquote(parsed.password or ''),
        'name': parsed.path.lstrip('/'), 'scheme': parsed.scheme,
    }


def _parts(service: Service, what: str) -> dict[str, Any]:
    credentials = _credentials(service, what)
    if credentials.get('host'):
        return {**credentials, 'scheme': urllib.parse.urlsplit(credentials.get('uri', '')).scheme}
    if credentials.get('uri'):
        return _from_uri(credentials['uri'], what, service.get('name'))
    raise ConfigurationError(f'VCAP_SERVICES: the {what} service {service.get("name")!r} has neither host nor uri')


def postgres_url(service: Service, scheme: str = 'postgresql') -> str:
    parts = _parts(service, 'PostgreSQL')
    user = _quote(parts.get('username', ''))
    password = parts.get('password')
    auth = f'{user}:{_quote(password)}@' if password else (f'{user}@' if user else '')
    port = f':{parts["port"]}' if parts.get('port') else ''
    return f'{scheme}://{auth}{parts["host"]}{port}/{_quote(parts.get("name", ""))}'


def redis_url(service: Service) -> str:
    parts = _parts(service, 'Redis')
    tls = parts.get('tls_enabled') or parts.get('scheme') == 'rediss'
    password = parts.get('password')
    auth = f'{_quote(parts.get("username") or "")}:{_quote(password)}@' if password else ''
    port = f':{parts["port"]}' if parts.get('port') else ''
    url = f'{"rediss" if tls else "redis"}://{auth}{parts["host"]}{port}/0'
    # kombu refuses a rediss:// URL that does not say how to check the server's certificate.
    return url + '?ssl_cert_reqs=required' if tls else url


def s3_logging(service: Service) -> dict[str, str]:
    credentials = _credentials(service, 'S3')
    bucket = credentials.get('bucket_name')
    if not bucket:
        raise ConfigurationError(f'VCAP_SERVICES: the S3 service {service.get("name")!r} has no bucket_name')
    connection = 'aws://{}:{}@/?region_name={}'.format(
        _quote(credentials.get('aws_access_key_id', '')), _quote(credentials.get('aws_secret_access_key', '')),
        _quote(credentials.get('aws_region', '')))
    return {
        'AIRFLOW__LOGGING__REMOTE_LOGGING': 'True',
        'AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER': f's3://{bucket}/airflow-logs',
        'AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID': LOGS_CONNECTION_ID,
        f'AIRFLOW_CONN_{LOGS_CONNECTION_ID.upper()}': connection,
    }


def settings(raw: str) -> dict[str, str]:
    """{environment variable: value} derived from VCAP_SERVICES (nothing for unbound services)."""
    services = parse(raw)
    derived = {}
    postgres = _first(services, POSTGRES_LABELS)
    if postgres:
        derived['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'] = postgres_url(postgres, 'postgresql+psycopg2')
        derived['AIRFLOW__CELERY__RESULT_BACKEND'] = postgres_url(postgres, 'db+postgresql')
        derived['AIRFLOW_CONN_DATASETS_DB'] = postgres_url(postgres)
    redis = _first(services, REDIS_LABELS)
    if redis:
        derived['AIRFLOW__CELERY__BROKER_URL'] = redis_url(redis)
    s3 = _first(services, S3_LABELS)
    if s3:
        derived.update(s3_logging(s3))
    return derived
