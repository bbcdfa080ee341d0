"""The datasets database named by a pipeline's `target_db`: an Airflow connection id
(AIRFLOW_CONN_DATASETS_DB for `datasets_db`, or any secrets backend), resolved by the
postgres provider's PostgresHook, which builds the connection's arguments (extras such
as sslmode included). The run engine speaks psycopg2, so the hook connects with it."""

from __future__ import annotations

from typing import Any, cast

import psycopg2
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.providers.postgres.hooks.postgres import PostgresHook
from psycopg2.extensions import connection as Connection

from dataflow.errors import ConfigurationError
from dataflow.load.connection import Connect


class _Psycopg2PostgresHook(PostgresHook):
    # With psycopg 3 installed (Airflow's postgres extra brings it) the hook would open a
    # psycopg 3 connection; everything else of get_conn() is what we want.
    def _create_connection(self, conn_args: dict[str, Any]) -> Any:
        return psycopg2.connect(**conn_args)


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
