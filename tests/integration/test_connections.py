import urllib.parse
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from dataflow.airflow.connections import connector_for
from dataflow.errors import ConfigurationError


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
