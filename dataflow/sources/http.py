"""A paged JSON client over HTTP, configured (not subclassed) with an auth and a paginator.

The auth is a `requests` AuthBase: it signs each request and may verify each response
(an auth raises ResponseRejected for a response it will not trust, or RetryNow to have
the request sent again at once, e.g. after correcting its clock). The paginator reads a
page's records and the next page's URL from the parsed document.

Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter,
honouring Retry-After, up to a bounded number of attempts; anything else that is not
HTTP 200 fails naming the page's URL. A `next` that leads back to a page already read is
refused (a loop would never end).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import requests
import requests.auth

from dataflow.errors import SourceError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_ERROR_BODY_EXCERPT = 200


@dataclass(frozen=True)
class Page:
    url: str
    results: list[Any]
    next_url: str | None
    body: bytes = field(repr=False)  # the verified response body, as received
    seconds: float

    @property
    def body_bytes(self) -> int:
        return len(self.body)


class Source(Protocol):
    """Where a dataset's records come from: pages, in order, from the first page's URL."""

    def url_for(self, path: str) -> str:
        """The absolute URL of a dataset's path on this source."""

    def pages(self, url: str) -> Iterator[Page]: ...


class Paginator(Protocol):
    def parse(self, url: str, document: Any) -> tuple[list[Any], str | None]:
        """(the page's records, the next page's absolute URL or None); ValueError saying why
        the document is not a page."""


class ResponseRejected(Exception):
    """Raised by an auth for a response it will not trust; the message says why."""


class RetryNow(Exception):
    """Raised by an auth to have the request sent again at once (not counted as an attempt),
    once: if it happens again, the request fails with `if_again`."""

    def __init__(self, if_again: str) -> None:
        super().__init__(if_again)
        self.if_again = if_again


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after_seconds(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _excerpt(body: bytes) -> str:
    text = body[:_ERROR_BODY_EXCERPT].decode('utf-8', 'replace')
    return text + ('…' if len(body) > _ERROR_BODY_EXCERPT else '')


class PagedJsonClient:
    def __init__(
        self,
        auth: requests.auth.AuthBase | None,
        paginator: Paginator,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        backoff_base: float,
        backoff_max: float,
        base_url: str = '',
        name: str = '',
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip('/')
        self.name = name  # the connection it was made from, named in errors about credentials
        self.auth = auth
        self.paginator = paginator
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f'PagedJsonClient({self.name!r}, {self.base_url!r}, auth={self.auth!r}, paginator={self.paginator!r})'

    def url_for(self, path: str) -> str:
        return self.base_url + path

    def get(self, url: str) -> bytes:
        """The verified body of a GET of `url`, retried as the module says."""
        retried_now = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(url)
            except RetryNow as again:
                if retried_now:
                    raise SourceError(url, again.if_again) from None
                retried_now = True
                attempt -= 1
            except _Retry as retry:
                if attempt >= self.max_attempts:
                    raise SourceError(url, f'gave up after {attempt} attempts: {retry.reason}') from None
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if retry.retry_after is not None:
                    delay = max(delay, min(retry.retry_after, self.backoff_max))
                log.warning('%s: %s; attempt %d of %d, retrying in %.1f s',
                            url, retry.reason, attempt, self.max_attempts, delay)
                self._sleep(delay)

    def _get_once(self, url: str) -> bytes:
        try:
            response = self.session.get(url, auth=self.auth, timeout=self.timeout, allow_redirects=False)
            body = response.content
        except requests.Timeout:
            raise _Retry(f'timed out (connect {self.timeout[0]} s, read {self.timeout[1]} s)') from None
        except requests.ConnectionError as exc:
            raise _Retry(f'connection failed: {type(exc).__name__}') from None
        except ResponseRejected as exc:
            raise SourceError(url, str(exc)) from None
        status = response.status_code
        if status in RETRYABLE_STATUSES:
            raise _Retry(f'HTTP {status}', _retry_after_seconds(response.headers.get('Retry-After'), self._clock()))
        if status in (401, 403):
            refused = f'connection {self.name!r}' if self.name else 'the source'
            raise SourceError(url, f'HTTP {status}: {refused} was refused: check its credentials (and, for Hawk, '
                                   f'that this machine\'s clock is within a minute of the source\'s): '
                                   f'{_excerpt(body)}')
        if status != 200:
            raise SourceError(url, f'HTTP {status}: {_excerpt(body)}')
        return body

    def get_page(self, url: str) -> Page:
        started = time.perf_counter()
        body = self.get(url)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise SourceError(url, f'response is not valid JSON: {exc}') from None
        try:
            results, next_url = self.paginator.parse(url, document)
        except ValueError as exc:
            raise SourceError(url, str(exc)) from None
        return Page(url, results, next_url, body, time.perf_counter() - started)

    def pages(self, url: str) -> Iterator[Page]:
        """Yield every page from `url`, following the paginator to the end."""
        seen = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen:
                raise SourceError(next_url, 'the source links back to a page already read (a "next" loop)')
            seen.add(next_url)
            page = self.get_page(next_url)
            yield page
            next_url = page.next_url
