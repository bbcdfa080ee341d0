import json
import urllib.parse

import psycopg2.extensions
import pytest

from dataflow.deploy import vcap
from dataflow.errors import ConfigurationError
from tests.support.vcap import AWKWARD, POSTGRES, REDIS, S3, services

def test_postgres_gives_metadata_results_and_datasets_with_escaped_passwords():
    derived = vcap.settings(services(POSTGRES))
    for name, scheme in (('AIRFLOW__DATABASE__SQL_ALCHEMY_CONN', 'postgresql+psycopg2'),
                         ('AIRFLOW__CELERY__RESULT_BACKEND', 'db+postgresql'),
                         ('AIRFLOW_CONN_DATASETS_DB', 'postgresql')):
        url = urllib.parse.urlsplit(derived[name])
        assert url.scheme == scheme
        assert (url.hostname, url.port, url.path) == ('rdsbroker-abc.eu-west-2.rds.amazonaws.com', 5432, '/rdsbroker_9f8e')
        assert (urllib.parse.unquote(url.username), urllib.parse.unquote(url.password)) == ('rdsbroker_9f8e_owner', AWKWARD)
    # libpq reads it back to the same password
    assert psycopg2.extensions.parse_dsn(derived['AIRFLOW_CONN_DATASETS_DB'])['password'] == AWKWARD


def test_the_first_postgres_service_is_used():
    second = {**POSTGRES, 'name': 'other', 'credentials': {**POSTGRES['credentials'], 'name': 'other_db'}}
    assert vcap.settings(services(POSTGRES, second))['AIRFLOW_CONN_DATASETS_DB'].endswith('/rdsbroker_9f8e')


def test_redis_with_tls_gives_a_broker_url_kombu_accepts():
    url = vcap.settings(services(REDIS))['AIRFLOW__CELERY__BROKER_URL']
    assert url.startswith('rediss://') and url.endswith('/0?ssl_cert_reqs=required')
    assert urllib.parse.unquote(urllib.parse.urlsplit(url).password) == 'r3d/s@%'
    plain = {**REDIS, 'credentials': {'host': '127.0.0.1', 'port': 6379, 'password': '', 'tls_enabled': False}}
    assert vcap.settings(services(plain))['AIRFLOW__CELERY__BROKER_URL'] == 'redis://127.0.0.1:6379/0'


def test_an_s3_bucket_gives_remote_task_logs():
    derived = vcap.settings(services(S3))
    assert derived['AIRFLOW__LOGGING__REMOTE_LOGGING'] == 'True'
    assert derived['AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER'] == 's3://paas-s3-broker-prod-lon-1234/airflow-logs'
    connection = urllib.parse.urlsplit(derived['AIRFLOW_CONN_DATAFLOW_LOGS_S3'])
    assert urllib.parse.unquote(connection.password) == 'se/cr+et='
    assert connection.query == 'region_name=eu-west-2'


def test_only_a_uri_is_enough():
    only_uri = {'name': 'db', 'label': 'postgres', 'credentials': {'uri': 'postgres://u:p%40ss@db.example:5433/d'}}
    url = urllib.parse.urlsplit(vcap.settings(services(only_uri))['AIRFLOW_CONN_DATASETS_DB'])
    assert (url.hostname, url.port, urllib.parse.unquote(url.password)) == ('db.example', 5433, 'p@ss')


def test_no_services_no_settings():
    assert vcap.settings('') == {} and vcap.settings('{}') == {}
    assert vcap.settings(json.dumps({'user-provided': [{'name': 'x', 'credentials': {'a': 1}}]})) == {}


@pytest.mark.parametrize('raw, message', [
    ('{not json', 'VCAP_SERVICES is not JSON'),
    ('[]', 'must be a JSON object'),
    (json.dumps({'postgres': [{'name': 'db', 'credentials': {}}]}), "service 'db' has no credentials"),
    (json.dumps({'postgres': [{'name': 'db', 'credentials': {'port': 1}}]}), 'has neither host nor uri'),
    (json.dumps({'aws-s3-bucket': [{'name': 'logs', 'credentials': {'a': 1}}]}), 'has no bucket_name'),
])
def test_bad_payloads_are_named(raw, message):
    with pytest.raises(ConfigurationError, match=message):
        vcap.settings(raw)
