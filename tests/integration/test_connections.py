import json
import urllib.parse
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from dataflow import settings
from dataflow.airflow.connections import connector_for, source_connection
from dataflow.errors import ConfigurationError
from dataflow.sources.bearer import BearerAuth
from dataflow.sources.connection import SourceConnection, source_for
from dataflow.sources.hawk import HawkAuth
from tests.support.settings import use_settings


@pytest.fixture
def role_with_awkward_password(datasets_dsn, pg_admin_dsn):
    """A login role whose password needs URL-escaping."""
    name, password = f'df_loader_{uuid.uuid4().hex[:8]}', 'p@ss:w/rd?#&=% é'
    admin = psycopg2.connect(pg_admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL('DROP ROLE IF EXISTS {}').format(sql.Identifier(name)))
        cursor.execute(sql.SQL('CREATE ROLE {} LOGIN PASSWORD %s').format(sql.Identifier(name)), (password,))
    yield name, password
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(name)))
    admin.close()


def test_airflow_connection_uri_from_the_environment(monkeypatch, datasets_dsn, role_with_awkward_password):
    name, password = role_with_awkward_password
    params = psycopg2.extensions.parse_dsn(datasets_dsn)
    host = params.get('host', '127.0.0.1')
    if host.startswith('/'):  # the embedded server listens on a socket: its directory goes in `host`
        uri = 'postgresql://{}:{}@/{}?host={}&sslmode=disable'.format(
            name, urllib.parse.quote(password, safe=''), params['dbname'], urllib.parse.quote(host, safe=''))
    else:
        uri = 'postgresql://{}:{}@{}:{}/{}?sslmode=disable'.format(
            name, urllib.parse.quote(password, safe=''), host, params.get('port', 5432), params['dbname'])
    monkeypatch.setenv('AIRFLOW_CONN_TEST_DATASETS', uri)
    conn = connector_for('test_datasets')()
    try:
        # This server trusts local connections, so check the password got through unmangled.
        assert (conn.info.user, conn.info.password, conn.get_dsn_parameters()['sslmode']) == (
            name, password, 'disable')
        with conn.cursor() as cursor:
            cursor.execute('SELECT current_user, current_database()')
            assert cursor.fetchone() == (name, params['dbname'])
    finally:
        conn.close()


def test_missing_connection_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv('AIRFLOW_CONN_NOWHERE', raising=False)
    with pytest.raises(ConfigurationError, match="no Airflow connection 'nowhere'.*set AIRFLOW_CONN_NOWHERE"):
        connector_for('nowhere')


# -- source connections -------------------------------------------------------------------

def test_a_source_connection_as_json_names_base_url_credentials_and_auth(monkeypatch):
    monkeypatch.setenv('AIRFLOW_CONN_PARTNER_API', json.dumps({
        'conn_type': 'http', 'host': 'https://partner.example/api/', 'login': 'partner-id', 'password': 'p@ss/word',
        'extra': {'auth': 'hawk', 'algorithm': 'sha256'}}))
    connection = source_connection('partner_api')
    assert connection == SourceConnection('partner_api', 'https://partner.example/api', 'hawk', 'partner-id',
                                          'p@ss/word', 'sha256')
    assert 'p@ss/word' not in repr(connection)
    client = source_for(connection, settings.current())
    assert client.url_for('/v4/dataset/x') == 'https://partner.example/api/v4/dataset/x'
    assert isinstance(client.auth, HawkAuth) and 'p@ss/word' not in repr(client)


def test_a_source_connection_as_a_uri_and_a_bearer_token(monkeypatch):
    monkeypatch.setenv('AIRFLOW_CONN_TOKEN_API', 'http://:t0ken%2F1@127.0.0.1:8100/?auth=bearer')
    connection = source_connection('token_api')
    assert (connection.base_url, connection.auth, connection.password) == ('http://127.0.0.1:8100', 'bearer', 't0ken/1')
    assert isinstance(source_for(connection, settings.current()).auth, BearerAuth)


def test_the_default_connection_is_made_of_the_hawk_settings(monkeypatch):
    monkeypatch.delenv('AIRFLOW_CONN_DATAHUB', raising=False)
    use_settings(monkeypatch, hawk_id='hid', hawk_key='hkey-0123456789', datahub_base_url='https://datahub.example')
    assert source_connection('datahub') == SourceConnection('datahub', 'https://datahub.example', 'hawk', 'hid',
                                                            'hkey-0123456789', 'sha256')


def test_a_missing_or_wrong_source_connection_is_named_and_its_secret_is_not(monkeypatch):
    monkeypatch.delenv('AIRFLOW_CONN_NOWHERE', raising=False)
    with pytest.raises(ConfigurationError, match="no Airflow connection 'nowhere' for the source: set "
                                                 "AIRFLOW_CONN_NOWHERE"):
        source_connection('nowhere')
    monkeypatch.setenv('AIRFLOW_CONN_ODD', json.dumps({'conn_type': 'http', 'host': 'https://x.example',
                                                       'password': 'sekrit-value', 'extra': {'auth': 'oauth'}}))
    with pytest.raises(ConfigurationError) as error:
        source_for(source_connection('odd'), settings.current())
    assert "connection 'odd': auth 'oauth' is not one data-flow knows (hawk, bearer)" in str(error.value)
    monkeypatch.setenv('AIRFLOW_CONN_ODD', json.dumps({'conn_type': 'http', 'host': 'https://x.example',
                                                       'password': 'sekrit-value'}))
    with pytest.raises(ConfigurationError, match="connection 'odd': a Hawk source needs an id and a key"):
        source_for(source_connection('odd'), settings.current())
    assert 'sekrit-value' not in str(error.value)
