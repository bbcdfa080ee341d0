"""The PostgreSQL server that local runs, the demo and the tests use: the one at
POSTGRES_ADMIN_URL when it answers; otherwise a throwaway one in a container when a
Docker engine is available; otherwise an embedded server (pgserver) under
DATAFLOW_STATE_DIR."""

import atexit
import contextlib
import logging
import os
import shutil
import subprocess
import uuid

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from dataflow import constants

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
    admin_url = admin_url or constants.POSTGRES_ADMIN_URL
    if reachable(admin_url):
        yield admin_url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        log.info('No PostgreSQL at %s; starting one in a container', _redacted(admin_url))
        with PostgresContainer('postgres:16', driver=None) as container:
            yield container.get_connection_url()
        return
    import pgserver

    data_dir = os.path.join(state_dir or constants.DATAFLOW_STATE_DIR, 'pgdata')
    os.makedirs(data_dir, exist_ok=True)
    log.info('No PostgreSQL at %s; starting an embedded server in %s', _redacted(admin_url), data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode='stop')
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        # In 'stop' mode pgserver leaves its exit hook registered; it would run again at
        # interpreter exit and log to streams that may be closed by then.
        atexit.unregister(server._cleanup)


def _redacted(dsn):
    params = psycopg2.extensions.parse_dsn(dsn)
    params.pop('password', None)
    return psycopg2.extensions.make_dsn(**params)


def database_dsn(admin_dsn, dbname):
    params = psycopg2.extensions.parse_dsn(admin_dsn)
    params['dbname'] = dbname
    return psycopg2.extensions.make_dsn(**params)


def create_database(admin_dsn, dbname):
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(dbname)))
    finally:
        conn.close()
    return database_dsn(admin_dsn, dbname)


def drop_database(admin_dsn, dbname):
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(dbname)))
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database(admin_dsn, prefix='dataflow_test'):
    """A new, empty database that is dropped on exit, whatever happened inside."""
    dbname = f'{prefix}_{uuid.uuid4().hex[:12]}'
    dsn = create_database(admin_dsn, dbname)
    try:
        yield dsn
    finally:
        drop_database(admin_dsn, dbname)
