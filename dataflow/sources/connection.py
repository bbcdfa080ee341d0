"""A source, made from its connection: where it is (the base URL), how to sign in (the
auth kind, with the login and password), and the settings' timeouts, attempts and backoff.

An Airflow connection gives these (dataflow.airflow.connections reads it when a task
runs): host = the base URL, login and password = the Hawk id and key (or, for a bearer
token, the password = the token), extra = {"auth": "hawk" | "bearer", "algorithm": ...}.
The default connection, `datahub`, is made from HAWK_ID, HAWK_KEY and DATAHUB_BASE_URL
when Airflow has no connection of that id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import requests.auth

from dataflow.errors import ConfigurationError
from dataflow.settings import Settings
from dataflow.sources.bearer import BearerAuth
from dataflow.sources.hawk import HawkAuth
from dataflow.sources.http import PagedJsonClient
from dataflow.sources.paginators import NextUrlPaginator


@dataclass(frozen=True)
class SourceConnection:
    conn_id: str
    base_url: str
    auth: str = 'hawk'
    login: str = ''
    password: str = field(default='', repr=False)
    algorithm: str = 'sha256'


AUTHS: dict[str, Callable[[SourceConnection], requests.auth.AuthBase]] = {
    'hawk': lambda c: HawkAuth(c.login, c.password, c.algorithm),
    'bearer': lambda c: BearerAuth(c.password),
}


def default_connection(conn_id: str, settings: Settings) -> SourceConnection:
    """The default source connection, from HAWK_ID, HAWK_KEY and DATAHUB_BASE_URL."""
    return SourceConnection(conn_id, settings.datahub_base_url, 'hawk', settings.hawk_id, settings.hawk_key,
                            settings.hawk_algorithm)


def source_for(connection: SourceConnection, settings: Settings) -> PagedJsonClient:
    """A paged JSON client of `{next, results}` pages for the connection."""
    if connection.auth not in AUTHS:
        raise ConfigurationError(f'connection {connection.conn_id!r}: auth {connection.auth!r} is not one data-flow '
                                 f'knows ({", ".join(AUTHS)}): set its extra to {{"auth": "hawk"}} or similar')
    if not connection.base_url.startswith(('http://', 'https://')):
        raise ConfigurationError(f'connection {connection.conn_id!r}: its host must be the base URL of the source, '
                                 f'e.g. https://datahub.example; got {connection.base_url!r}')
    try:
        auth = AUTHS[connection.auth](connection)
    except ConfigurationError as exc:
        raise ConfigurationError(f'connection {connection.conn_id!r}: {exc}') from None
    return PagedJsonClient(
        auth, NextUrlPaginator(), base_url=connection.base_url, name=connection.conn_id,
        connect_timeout=settings.source_connect_timeout, read_timeout=settings.source_read_timeout,
        max_attempts=settings.source_max_attempts, backoff_base=settings.source_backoff_base,
        backoff_max=settings.source_backoff_max,
    )


def hawk_source(hawk_id: str, hawk_key: str, algorithm: str, settings: Settings, base_url: str = '',
                conn_id: str = '') -> PagedJsonClient:
    """A Hawk source with these credentials (tools and tests that hold them)."""
    return source_for(SourceConnection(conn_id, base_url or settings.datahub_base_url, 'hawk', hawk_id, hawk_key,
                                       algorithm), settings)
