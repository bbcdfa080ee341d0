"""Connections to the datasets database, named by a pipeline's `target_db`: an Airflow
connection id (AIRFLOW_CONN_DATASETS_DB for `datasets_db`, or any secrets backend)."""

import psycopg2
import psycopg2.extensions

from dataflow import constants
from dataflow.errors import DataflowError

# Connection extras that are libpq settings and are passed through.
_LIBPQ_EXTRAS = ('sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'connect_timeout', 'options',
                 'application_name', 'target_session_attrs', 'keepalives', 'keepalives_idle')


def dsn_for(conn_id):
    """A libpq DSN for the Airflow connection `conn_id`; DATASETS_DB_URL when Airflow has
    no such connection and that is set."""
    from airflow.sdk import Connection

    try:
        connection = Connection.get(conn_id)
    except Exception as exc:  # noqa: BLE001 - Airflow raises different types in and out of tasks
        if constants.DATASETS_DB_URL:
            return constants.DATASETS_DB_URL
        raise DataflowError(
            f'no Airflow connection {conn_id!r} ({type(exc).__name__}): '
            f'set AIRFLOW_CONN_{conn_id.upper()} to a postgresql:// URI'
        ) from None
    params = {
        'host': connection.host,
        'port': connection.port,
        'user': connection.login,
        'password': connection.password,
        'dbname': connection.schema,
    }
    extras = connection.extra_dejson or {}
    params.update({k: extras[k] for k in _LIBPQ_EXTRAS if k in extras})
    if not params['host'] and extras.get('host'):
        # postgresql://user@/db?host=/socket/dir: a server on a Unix socket.
        params['host'] = extras['host']
    return psycopg2.extensions.make_dsn(**{k: v for k, v in params.items() if v not in (None, '')})


def connect(conn_id):
    return psycopg2.connect(dsn_for(conn_id))
