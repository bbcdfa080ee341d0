"""Hawk, as a `requests` auth: signs every request, and verifies every response.

A 200 response must carry a valid `Server-Authorization` header signing its body and
content type; an unsigned or forged response is rejected. A 401 carrying the server's
signed time (`ts` with a `tsm` proving the server holds our key) corrects our clock and
has the request sent again, once. The Hawk key and whole Authorization headers are never
logged (nor is the key in this object's repr).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import mohawk
import mohawk.exc
import mohawk.util
import requests
import requests.auth

from dataflow.errors import ConfigurationError
from dataflow.sources.http import ResponseRejected, RetryNow

log = logging.getLogger(__name__)


class _DropUncheckedNonceWarning(logging.Filter):
    """mohawk warns on every response it checks without a nonce store. A client checking
    responses to its own requests has nothing to replay-check; keep the log readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return 'seen_nonce was None' not in record.getMessage()


logging.getLogger('mohawk.base').addFilter(_DropUncheckedNonceWarning())
# mohawk's debug messages carry whole Authorization headers (and whole payloads, which
# also costs CPU to format): they must never be emitted, whatever the root level is.
logging.getLogger('mohawk').setLevel(logging.INFO)


class _WholeBody:
    """A body for mohawk to hash in one read: given a file, it hashes in 1 KB reads; given
    bytes, it first pretty-prints all of them into a debug message (0.1 s per 800 KB)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def read(self, _size: int = -1) -> bytes:
        body, self._body = self._body, b''
        return body


class HawkAuth(requests.auth.AuthBase):
    def __init__(self, hawk_id: str, hawk_key: str, algorithm: str = 'sha256',
                 clock: Callable[[], float] = time.time) -> None:
        if not hawk_id or not hawk_key:
            raise ConfigurationError('a Hawk source needs an id and a key (its connection\'s login and '
                                     'password, or HAWK_ID and HAWK_KEY)')
        self._credentials = {'id': hawk_id, 'key': hawk_key, 'algorithm': algorithm}
        self._clock = clock
        # Seconds to add to the local clock, learnt from the server's signed `ts`.
        self.clock_offset = 0.0

    def __repr__(self) -> str:
        return f'HawkAuth(id={self._credentials["id"]!r}, algorithm={self._credentials["algorithm"]!r})'

    def sign(self, url: str, method: str = 'GET', *, timestamp: int | None = None, nonce: str | None = None,
             ext: str | None = None) -> mohawk.Sender:
        """A mohawk Sender for a body-less request (its `request_header` is the Authorization)."""
        return mohawk.Sender(
            self._credentials, url, method, always_hash_content=False, nonce=nonce, ext=ext,
            _timestamp=timestamp if timestamp is not None else int(self._clock() + self.clock_offset),
        )

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        sender = self.sign(str(request.url), str(request.method))
        request.headers['Authorization'] = sender.request_header
        request.headers['Content-Type'] = ''  # what the signature says: no body, no content type
        request.register_hook('response', lambda response, **_: self._verify(sender, response))
        return request

    def _verify(self, sender: mohawk.Sender, response: requests.Response) -> requests.Response:
        if response.status_code == 401:
            server_time = self.signed_server_time(response.headers.get('WWW-Authenticate', ''))
            if server_time is not None:
                self.clock_offset = server_time - self._clock()
                log.warning('Clock resynchronised with %s: local time is off by %.0f s',
                            _origin(str(response.url)), self.clock_offset)
                raise RetryNow('server still reports a stale timestamp after resynchronising')
        if response.status_code != 200:
            return response
        signature = response.headers.get('Server-Authorization')
        if not signature:
            raise ResponseRejected('response is not signed: no Server-Authorization header')
        try:
            sender.accept_response(
                signature, content=_WholeBody(response.content),
                content_type=response.headers.get('Content-Type', ''),
                localtime_offset_in_seconds=self.clock_offset,
            )
        except mohawk.exc.HawkFail as exc:
            raise ResponseRejected(f'response signature rejected ({type(exc).__name__}): {exc}') from None
        return response

    def signed_server_time(self, www_authenticate: str) -> int | None:
        """The server's time from a Hawk WWW-Authenticate header, if its `tsm` proves the
        server holds our key; else None."""
        if not www_authenticate.lower().startswith('hawk '):
            return None
        try:
            attributes: dict[str, Any] = mohawk.util.parse_authorization_header(www_authenticate)
            server_time = int(attributes['ts'])
            tsm = attributes['tsm']
        except (mohawk.exc.HawkFail, KeyError, ValueError):
            return None
        expected = mohawk.util.calculate_ts_mac(server_time, self._credentials).decode('ascii')
        if not mohawk.util.strings_match(expected, tsm):
            log.warning('Ignoring a stale-timestamp answer whose tsm does not verify')
            return None
        return server_time


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f'{parts.scheme}://{parts.netloc}'
