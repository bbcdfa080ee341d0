"""Connections to the datasets database, as the run engine takes them: a `Connect`, a
function that opens a new psycopg2 connection (each task and thread opens its own).
Resolving an Airflow connection id into one is dataflow.airflow.connections' job."""

from __future__ import annotations

from collections.abc import Callable

import psycopg2
from psycopg2.extensions import connection as Connection

Connect = Callable[[], Connection]


def connector(dsn: str) -> Connect:
    """A Connect for a libpq DSN or postgresql:// URL."""

    def connect() -> Connection:
        return psycopg2.connect(dsn)

    return connect
