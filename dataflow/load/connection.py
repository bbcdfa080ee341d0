"""Connections to the datasets database, as the run engine takes them: a `Connect`, a
function that opens a new psycopg2 connection (each task and thread opens its own).
Resolving an Airflow connection id into one is dataflow.airflow.connections' job.

Every connection is opened with `liveness_args()`, so that a peer that vanished (a worker
host lost or cut off, a database host gone in a failover) is noticed on both ends within
about half a minute, rather than after the kernel's default of two hours: the client's
blocked call fails, and the server ends the dead client's session, rolling back its
transaction and freeing the page it had claimed for another task to load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection

Connect = Callable[[], Connection]

# Seconds of silence before the first probe, between probes, and probes unanswered before
# the connection is given up; and how long sent data may stay unacknowledged (a peer that
# is gone while we send: keepalives only probe an idle connection).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
USER_TIMEOUT_MS = 30_000

# SQLSTATEs that mean the session is gone: connection exceptions (08...) and the server
# shutting down or terminating it (57P01-57P03).
_LOST_STATES = ('08', '57P01', '57P02', '57P03')


def liveness_args(options: str | None = None) -> dict[str, Any]:
    """libpq arguments that detect a dead peer on both ends (see the module's docstring);
    `options` are the connection's own server options, kept."""
    server = ' '.join([
        f'-c tcp_keepalives_idle={KEEPALIVE_IDLE}', f'-c tcp_keepalives_interval={KEEPALIVE_INTERVAL}',
        f'-c tcp_keepalives_count={KEEPALIVE_COUNT}', f'-c tcp_user_timeout={USER_TIMEOUT_MS}',
    ])
    return {
        'keepalives': 1, 'keepalives_idle': KEEPALIVE_IDLE, 'keepalives_interval': KEEPALIVE_INTERVAL,
        'keepalives_count': KEEPALIVE_COUNT, 'tcp_user_timeout': USER_TIMEOUT_MS,
        'options': f'{options} {server}' if options else server,
    }


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the connection to the database is gone (not that a statement
    failed): the server restarted, failed over, or cannot be reached."""
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    code = exc.pgcode
    return code is None or code.startswith(_LOST_STATES)


def connector(dsn: str) -> Connect:
    """A Connect for a libpq DSN or postgresql:// URL."""

    def connect() -> Connection:
        conn: Connection = psycopg2.connect(dsn, **liveness_args())
        return conn

    return connect
