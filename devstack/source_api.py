"""A Data Hub-like source API: Hawk-authenticated requests, Hawk-signed responses,
paginated as `{"next": URL or null, "results": [...]}`.

Records live in memory, keyed by `key_field`, and may be added, changed and removed
between runs. Faults can be queued for tests: `fail_next(n, *faults)` makes the next
requests for page n misbehave, one fault per request.

Run it alone with `python -m devstack.source_api --rows 5000` (HAWK_ID and HAWK_KEY set).
"""

import argparse
import collections
import io
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mohawk
import mohawk.exc
import mohawk.util
import orjson

from dataflow import settings

log = logging.getLogger(__name__)

DATASET_PATH = '/v4/dataset/omis-dataset'

# Faults a test can queue (see `DemoSource.fail_next`):
UNSIGNED = 'unsigned'            # 200 without Server-Authorization
FORGED = 'forged'                # 200 signed for a different body
MALFORMED_JSON = 'malformed'     # 200, signed, but not JSON
SLOW = 'slow'                    # ('slow', seconds): sleep, then answer normally


class _NonceStore:
    """Refuses a (id, nonce, ts) seen in the last few thousand requests: replay protection."""

    def __init__(self, size=10000):
        self._seen = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __call__(self, sender_id, nonce, timestamp):
        key = (sender_id, nonce, timestamp)
        with self._lock:
            if key in self._seen:
                return True
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
        return False


class DemoSource:
    def __init__(self, hawk_id, hawk_key, *, algorithm='sha256', page_size=1000, clock_skew=0,
                 host='127.0.0.1', port=0, key_field='reference'):
        self.credentials = {'id': hawk_id, 'key': hawk_key, 'algorithm': algorithm}
        self.page_size = page_size
        self.clock_skew = clock_skew  # seconds the server's clock is ahead of the client's
        self.key_field = key_field
        self._records = {}            # key -> encoded JSON bytes, in insertion order
        self._order = None            # snapshot of keys, rebuilt after a change
        self._lock = threading.Lock()
        self._faults = collections.defaultdict(collections.deque)
        self._seen_nonce = _NonceStore()
        self.requests = collections.Counter()  # page number -> requests received
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = None

    # -- data ---------------------------------------------------------------
    def put(self, *records):
        with self._lock:
            for record in records:
                self._records[record[self.key_field]] = orjson.dumps(record)
            self._order = None

    def remove(self, *keys):
        with self._lock:
            for key in keys:
                del self._records[key]
            self._order = None

    def records(self):
        with self._lock:
            return [orjson.loads(v) for v in self._records.values()]

    def reset(self):
        """No records, no queued faults, no requests counted."""
        with self._lock:
            self._records.clear()
            self._order = None
            self._faults.clear()
            self.requests.clear()

    def fail_next(self, page_number, *faults):
        """Queue faults for page `page_number` (0-based): an int is an HTTP status,
        (status, retry_after) adds a Retry-After header, and see the constants above."""
        with self._lock:
            self._faults[page_number].extend(faults)

    # -- serving --------------------------------------------------------------
    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    @property
    def dataset_url(self):
        return self.url + DATASET_PATH

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name='demo-source', daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _page(self, page_number):
        with self._lock:
            if self._order is None:
                self._order = list(self._records)
            start = page_number * self.page_size
            keys = self._order[start:start + self.page_size]
            rows = [self._records[k] for k in keys]
            has_next = start + self.page_size < len(self._order)
            fault = self._faults[page_number].popleft() if self._faults[page_number] else None
        next_url = f'{self.dataset_url}?page={page_number + 1}' if has_next else None
        body = b'{"next":' + orjson.dumps(next_url) + b',"results":[' + b','.join(rows) + b']}'
        return body, fault

    def _handler_class(self):
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, format, *args):
                log.debug('%s %s', self.address_string(), format % args)

            def _send(self, status, body=b'', content_type='application/json', headers=()):
                self.send_response(status)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = f'http://{self.headers.get("Host", "")}{self.path}'
                parsed = urllib.parse.urlsplit(self.path)
                try:
                    page_number = int(urllib.parse.parse_qs(parsed.query).get('page', ['0'])[0])
                except ValueError:
                    return self._send(400, b'{"detail":"page must be a number"}')
                with source._lock:
                    source.requests[page_number] += 1
                try:
                    receiver = mohawk.Receiver(
                        lambda sender_id: source._lookup(sender_id),
                        self.headers.get('Authorization', ''),
                        url,
                        'GET',
                        content=b'',
                        content_type=self.headers.get('Content-Type', ''),
                        seen_nonce=source._seen_nonce,
                        localtime_offset_in_seconds=source.clock_skew,
                    )
                except mohawk.exc.TokenExpired:
                    now = int(time.time() + source.clock_skew)
                    tsm = mohawk.util.calculate_ts_mac(now, source.credentials).decode('ascii')
                    challenge = f'Hawk ts="{now}", tsm="{tsm}", error="Stale timestamp"'
                    return self._send(401, b'{"detail":"Stale timestamp"}', headers=[('WWW-Authenticate', challenge)])
                except mohawk.exc.HawkFail as exc:
                    return self._send(401, orjson.dumps({'detail': f'Hawk: {type(exc).__name__}'}))

                if parsed.path.rstrip('/') != DATASET_PATH:
                    return self._send(404, b'{"detail":"Not found"}')
                body, fault = source._page(page_number)

                if isinstance(fault, int):
                    fault = (fault, None)
                if isinstance(fault, tuple) and isinstance(fault[0], int):
                    status, retry_after = fault
                    headers = [('Retry-After', retry_after)] if retry_after is not None else []
                    return self._send(status, orjson.dumps({'detail': f'injected HTTP {status}'}), headers=headers)
                if isinstance(fault, tuple) and fault[0] == SLOW:
                    time.sleep(fault[1])
                    fault = None
                if fault == MALFORMED_JSON:
                    body = body[: len(body) // 2]
                signed_body = b'{"forged": true}' if fault == FORGED else body
                receiver.respond(content=io.BytesIO(signed_body), content_type='application/json')
                headers = [] if fault == UNSIGNED else [('Server-Authorization', receiver.response_header)]
                self._send(200, body, headers=headers)

        return Handler

    def _lookup(self, sender_id):
        if sender_id != self.credentials['id']:
            raise LookupError(sender_id)
        return self.credentials


def main(argv=None):
    from devstack.omis_records import omis_record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8100)
    parser.add_argument('--rows', type=int, default=5000)
    parser.add_argument('--page-size', type=int, default=1000)
    args = parser.parse_args(argv)
    config = settings.current()
    if not config.hawk_id or not config.hawk_key:
        parser.error('set HAWK_ID and HAWK_KEY')
    logging.basicConfig(level=logging.INFO)
    source = DemoSource(config.hawk_id, config.hawk_key, algorithm=config.hawk_algorithm,
                        page_size=args.page_size, host=args.host, port=args.port)
    source.put(*(omis_record(i) for i in range(args.rows)))
    log.info('Serving %d OMIS records at %s', args.rows, source.dataset_url)
    source._server.serve_forever()


if __name__ == '__main__':
    main()
