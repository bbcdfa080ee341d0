"""What a pipeline's Airflow connections hold, read when a task runs (never at import).

The datasets database named by `target_db` (AIRFLOW_CONN_DATASETS_DB for `datasets_db`, or
any secrets backend) is resolved by the postgres provider's PostgresHook, which builds the
connection's arguments (extras such as sslmode included); the run engine speaks psycopg2,
so the hook connects with it. The source named by `source_conn_id` becomes a
SourceConnection (dataflow.sources.connection says what its fields mean); Airflow masks
its password in every log.
"""

from __future__ import annotations

from typing import Any, cast

import psycopg2
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from psycopg2.extensions import connection as Connection

from dataflow import settings
from dataflow.definitions.datasets import DEFAULT_SOURCE_CONN_ID
from dataflow.errors import ConfigurationError
from dataflow.load.connection import Connect, liveness_args
from dataflow.sources.connection import SourceConnection, default_connection


class _Psycopg2PostgresHook(PostgresHook):
    # With psycopg 3 installed (Airflow's postgres extra brings it) the hook would open a
    # psycopg 3 connection; everything else of get_conn() is what we want.
    def _create_connection(self, conn_args: dict[str, Any]) -> Any:
        return psycopg2.connect(**{**conn_args, **liveness_args(conn_args.get('options'))})


def connector_for(conn_id: str) -> Connect:
    """A Connect for the Airflow connection `conn_id`; ConfigurationError saying what to set
    when Airflow has no such connection."""
    hook = _Psycopg2PostgresHook(postgres_conn_id=conn_id)
    try:
        hook.connection  # resolved now, so a missing connection is named before any step runs
    except AirflowNotFoundException:
        raise ConfigurationError(f'no Airflow connection {conn_id!r}: set AIRFLOW_CONN_{conn_id.upper()} to a '
                                 'postgresql:// URI') from None

    def connect() -> Connection:
        return cast(Connection, hook.get_conn())

    return connect


def source_connection(conn_id: str) -> SourceConnection:
    """The source connection `conn_id`: Airflow's, or for `datahub` when Airflow has none, the
    default one (HAWK_ID, HAWK_KEY, DATAHUB_BASE_URL)."""
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id == DEFAULT_SOURCE_CONN_ID:
            return default_connection(conn_id, settings.current())
        raise ConfigurationError(f'no Airflow connection {conn_id!r} for the source: set AIRFLOW_CONN_{conn_id.upper()} '
                                 '(host: the base URL; login and password: the Hawk id and key)') from None
    extra = connection.extra_dejson or {}
    host = connection.host or ''
    if '://' in host:
        base_url = host.rstrip('/')
    else:
        scheme = connection.conn_type if connection.conn_type in ('http', 'https') else 'https'
        base_url = f'{scheme}://{host}' + (f':{connection.port}' if connection.port else '')
    if connection.schema:
        base_url += '/' + connection.schema.strip('/')
    return SourceConnection(conn_id, base_url, str(extra.get('auth', 'hawk')), connection.login or '',
                            connection.password or '', str(extra.get('algorithm', 'sha256')))
