"""Hawk-signed paging through a `{"next": ..., "results": [...]}` source API.

Every response must carry a valid `Server-Authorization` header signing its body and
content type; an unsigned or forged response is refused. Connection errors, timeouts,
429 and 5xx are retried with exponential backoff and jitter (honouring Retry-After) up
to a bounded number of attempts. A 401 carrying the server's signed time (`ts`, `tsm`)
resynchronises the clock and retries once.

The Hawk key and whole Authorization headers are never logged.
"""

import email.utils
import logging
import random
import time
import urllib.parse
from dataclasses import dataclass, field

import mohawk
import mohawk.exc
import mohawk.util
import orjson
import requests

from dataflow import constants
from dataflow.errors import SourceError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_ERROR_BODY_EXCERPT = 200


class _DropUncheckedNonceWarning(logging.Filter):
    """mohawk warns on every response it checks without a nonce store. A client checking
    responses to its own requests has nothing to replay-check; keep the log readable."""

    def filter(self, record):
        return 'seen_nonce was None' not in record.getMessage()


logging.getLogger('mohawk.base').addFilter(_DropUncheckedNonceWarning())
# mohawk's debug messages carry whole Authorization headers (and whole payloads, which
# also costs CPU to format): they must never be emitted, whatever the root level is.
logging.getLogger('mohawk').setLevel(logging.INFO)


@dataclass(frozen=True)
class Page:
    url: str
    results: list
    next_url: str | None
    body: bytes = field(repr=False)  # the verified response body, as received
    seconds: float

    @property
    def body_bytes(self):
        return len(self.body)


class _WholeBody:
    """A body for mohawk to hash in one read: given a file, it hashes in 1 KB reads; given
    bytes, it first pretty-prints all of them into a debug message (0.1 s per 800 KB)."""

    def __init__(self, body):
        self._body = body

    def read(self, _size=-1):
        body, self._body = self._body, b''
        return body


class _Retry(Exception):
    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after_seconds(value, now):
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


def _excerpt(body):
    text = body[:_ERROR_BODY_EXCERPT].decode('utf-8', 'replace')
    return text + ('…' if len(body) > _ERROR_BODY_EXCERPT else '')


class HawkClient:
    def __init__(
        self,
        hawk_id=None,
        hawk_key=None,
        algorithm=None,
        *,
        connect_timeout=None,
        read_timeout=None,
        max_attempts=None,
        backoff_base=None,
        backoff_max=None,
        session=None,
        sleep=time.sleep,
        clock=time.time,
    ):
        self._credentials = {
            'id': hawk_id if hawk_id is not None else constants.HAWK_ID,
            'key': hawk_key if hawk_key is not None else constants.HAWK_KEY,
            'algorithm': algorithm or constants.HAWK_ALGORITHM,
        }
        if not self._credentials['id'] or not self._credentials['key']:
            raise SourceError('(none)', 'HAWK_ID and HAWK_KEY must be set to read a Hawk-signed source')
        self.timeout = (
            connect_timeout if connect_timeout is not None else constants.SOURCE_CONNECT_TIMEOUT,
            read_timeout if read_timeout is not None else constants.SOURCE_READ_TIMEOUT,
        )
        self.max_attempts = max_attempts or constants.SOURCE_MAX_ATTEMPTS
        self.backoff_base = backoff_base if backoff_base is not None else constants.SOURCE_BACKOFF_BASE
        self.backoff_max = backoff_max if backoff_max is not None else constants.SOURCE_BACKOFF_MAX
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        # Seconds to add to the local clock, learnt from the server's signed `ts`.
        self.clock_offset = 0.0

    def __repr__(self):
        return f'HawkClient(id={self._credentials["id"]!r}, algorithm={self._credentials["algorithm"]!r})'

    def sign(self, url, *, timestamp=None, nonce=None, ext=None):
        """A mohawk Sender for a GET of `url` (its `request_header` is the Authorization)."""
        return mohawk.Sender(
            self._credentials,
            url,
            'GET',
            always_hash_content=False,
            nonce=nonce,
            ext=ext,
            _timestamp=timestamp if timestamp is not None else int(self._clock() + self.clock_offset),
        )

    def get(self, url):
        """The verified body of a GET of `url`, retried as the module says."""
        resynced = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(url)
            except _StaleTimestamp as stale:
                if resynced:
                    raise SourceError(url, 'server still reports a stale timestamp after resynchronising') from None
                resynced = True
                attempt -= 1  # a resync is not a failed attempt
                self.clock_offset = stale.server_time - self._clock()
                log.warning('Clock resynchronised with %s: local time is off by %.0f s', _origin(url), self.clock_offset)
            except _Retry as retry:
                if attempt >= self.max_attempts:
                    raise SourceError(url, f'gave up after {attempt} attempts: {retry.reason}') from None
                delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if retry.retry_after is not None:
                    delay = max(delay, min(retry.retry_after, self.backoff_max))
                log.warning('%s: %s; attempt %d of %d, retrying in %.1f s',
                            url, retry.reason, attempt, self.max_attempts, delay)
                self._sleep(delay)

    def _get_once(self, url):
        sender = self.sign(url)
        try:
            response = self.session.get(
                url,
                headers={'Authorization': sender.request_header, 'Content-Type': ''},
                timeout=self.timeout,
                allow_redirects=False,
            )
            body = response.content
        except requests.Timeout:
            raise _Retry(f'timed out (connect {self.timeout[0]} s, read {self.timeout[1]} s)') from None
        except requests.ConnectionError as exc:
            raise _Retry(f'connection failed: {type(exc).__name__}') from None

        status = response.status_code
        if status in RETRYABLE_STATUSES:
            raise _Retry(
                f'HTTP {status}',
                _retry_after_seconds(response.headers.get('Retry-After'), self._clock()),
            )
        if status == 401:
            server_time = self._signed_server_time(response.headers.get('WWW-Authenticate', ''))
            if server_time is not None:
                raise _StaleTimestamp(server_time)
        if status != 200:
            raise SourceError(url, f'HTTP {status}: {_excerpt(body)}')

        signature = response.headers.get('Server-Authorization')
        if not signature:
            raise SourceError(url, 'response is not signed: no Server-Authorization header')
        try:
            sender.accept_response(
                signature,
                content=_WholeBody(body),
                content_type=response.headers.get('Content-Type', ''),
                localtime_offset_in_seconds=self.clock_offset,
            )
        except mohawk.exc.HawkFail as exc:
            raise SourceError(url, f'response signature rejected ({type(exc).__name__}): {exc}') from None
        return body

    def _signed_server_time(self, www_authenticate):
        """The server's time from a Hawk WWW-Authenticate header, if its `tsm` proves
        the server holds our key; else None."""
        if not www_authenticate.lower().startswith('hawk '):
            return None
        try:
            attributes = mohawk.util.parse_authorization_header(www_authenticate)
            server_time = int(attributes['ts'])
            tsm = attributes['tsm']
        except (mohawk.exc.HawkFail, KeyError, ValueError):
            return None
        expected = mohawk.util.calculate_ts_mac(server_time, self._credentials).decode('ascii')
        if not mohawk.util.strings_match(expected, tsm):
            log.warning('Ignoring a stale-timestamp answer whose tsm does not verify')
            return None
        return server_time

    def get_page(self, url):
        started = time.perf_counter()
        body = self.get(url)
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise SourceError(url, f'response is not valid JSON: {exc}') from None
        if not isinstance(document, dict) or not isinstance(document.get('results'), list):
            raise SourceError(url, 'response is not {"next": ..., "results": [...]}')
        next_url = document.get('next')
        if next_url is not None:
            if not isinstance(next_url, str) or not next_url:
                raise SourceError(url, f'"next" must be a URL or null, got {next_url!r:.80}')
            next_url = urllib.parse.urljoin(url, next_url)
        return Page(url, document['results'], next_url, body, time.perf_counter() - started)

    def pages(self, url):
        """Yield every page from `url`, following `next` to the end."""
        seen = set()
        while url is not None:
            if url in seen:
                raise SourceError(url, 'the source links back to a page already read (a "next" loop)')
            seen.add(url)
            page = self.get_page(url)
            yield page
            url = page.next_url


class _StaleTimestamp(Exception):
    def __init__(self, server_time):
        super().__init__(server_time)
        self.server_time = server_time


def _origin(url):
    parts = urllib.parse.urlsplit(url)
    return f'{parts.scheme}://{parts.netloc}'
