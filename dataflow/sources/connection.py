"""A deployment's source, built from its credentials and the settings' timeouts, attempts
and backoff."""

from __future__ import annotations

from dataflow.settings import Settings
from dataflow.sources.hawk import HawkAuth
from dataflow.sources.http import PagedJsonClient
from dataflow.sources.paginators import NextUrlPaginator


def hawk_source(hawk_id: str, hawk_key: str, algorithm: str, settings: Settings) -> PagedJsonClient:
    """A Data Hub-like source: Hawk-signed GETs of `{next, results}` pages."""
    return PagedJsonClient(
        HawkAuth(hawk_id, hawk_key, algorithm), NextUrlPaginator(),
        connect_timeout=settings.source_connect_timeout, read_timeout=settings.source_read_timeout,
        max_attempts=settings.source_max_attempts, backoff_base=settings.source_backoff_base,
        backoff_max=settings.source_backoff_max,
    )
