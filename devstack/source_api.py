"""A Data Hub-like source API: Hawk-authenticated requests, Hawk-signed responses, and
Data Hub's dataset endpoints (`/v4/dataset/omis-dataset`, `contacts-dataset`,
`investment-projects-dataset`) paginated as Django REST Framework's cursor pagination does:
`{"next": URL or null, "previous": URL or null, "results": [...]}`, pages ordered by
(created_on, pk), `next` an absolute URL with an opaque `cursor=`.

Records live in memory, per dataset, and may be added, changed and removed between runs.
Faults can be queued for tests: `source.omis.fail_next(n, *faults)` makes the next
requests for page n misbehave, one fault per request.

Run it alone with `python -m devstack.source_api --rows 5000` (HAWK_ID and HAWK_KEY set).
"""

import argparse
import base64
import bisect
import collections
import datetime
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

DATASETS = {  # path: (attribute, the field that keys a record)
    '/v4/dataset/omis-dataset': ('omis', 'reference'),
    '/v4/dataset/contacts-dataset': ('contacts', 'id'),
    '/v4/dataset/investment-projects-dataset': ('investment_projects', 'id'),
}

# Faults a test can queue (see `Dataset.fail_next`):
UNSIGNED = 'unsigned'            # 200 without Server-Authorization
FORGED = 'forged'                # 200 signed for a different body
MALFORMED_JSON = 'malformed'     # 200, signed, but not JSON
SLOW = 'slow'                    # ('slow', seconds): sleep, then answer normally
RENAME = 'rename'                # ('rename', old key, new key): that page's records say new for old


class Hold:
    """A fault that holds the request for its page until the test releases it (or
    `timeout` passes), then answers normally: a run paused exactly where a test wants it."""

    def __init__(self, timeout=600.0):
        self.reached, self._released, self.timeout = threading.Event(), threading.Event(), timeout

    def wait_reached(self, timeout):
        if not self.reached.wait(timeout):
            raise TimeoutError(f'no request reached the held page in {timeout} s')

    def release(self):
        self._released.set()

    def hold(self):
        self.reached.set()
        self._released.wait(self.timeout)


def _ordering(record):
    """(created_on, pk): Data Hub's dataset ordering."""
    created = record.get('created_on')
    when = datetime.datetime.fromisoformat(created.replace('Z', '+00:00')) if created else datetime.datetime.min.replace(
        tzinfo=datetime.timezone.utc)
    return when, str(record.get('id') or '')


def encode_cursor(page_number, position):
    # Opaque to clients, as DRF's base64-encoded `o=&r=&p=` is. The page number is kept in
    # it only for queued faults.
    raw = orjson.dumps({'n': page_number, 'p': [position[0].isoformat(), position[1]]})
    return base64.urlsafe_b64encode(raw).decode('ascii').rstrip('=')


def decode_cursor(cursor):
    """(page number, position), or ValueError for a cursor this server did not make."""
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + '=' * (-len(cursor) % 4)))
        return int(decoded['n']), (datetime.datetime.fromisoformat(decoded['p'][0]), str(decoded['p'][1]))
    except (ValueError, KeyError, TypeError, IndexError):
        raise ValueError(cursor) from None


class Dataset:
    """One dataset endpoint's records, queued faults and request counts."""

    def __init__(self, source, path, key_field):
        self.source, self.path, self.key_field = source, path, key_field
        self._records = {}            # key -> (ordering, encoded JSON bytes)
        self._order = None            # [(ordering, key)], rebuilt after a change
        self._faults = collections.defaultdict(collections.deque)
        self.requests = collections.Counter()  # page number -> requests received

    @property
    def _lock(self):
        return self.source.lock

    @property
    def url(self):
        return self.source.url + self.path

    def put(self, *records):
        with self._lock:
            for record in records:
                self._records[record[self.key_field]] = (_ordering(record), orjson.dumps(record))
            self._order = None

    def remove(self, *keys):
        with self._lock:
            for key in keys:
                del self._records[key]
            self._order = None

    def records(self):
        """The records, in the order pages send them."""
        with self._lock:
            return [orjson.loads(self._records[key][1]) for _, key in self._sorted()]

    def reset(self):
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

    def page_url(self, page_number):
        """The URL of page `page_number` as the previous page's `next` gives it now."""
        with self._lock:
            if page_number == 0:
                return self.url
            order = self._sorted()
            index = page_number * self.source.page_size
            if index > len(order):
                raise IndexError(f'{self.path} has no page {page_number}')
            return self._cursor_url(page_number, order[index - 1][0])

    def _sorted(self):
        if self._order is None:
            self._order = sorted((ordering, key) for key, (ordering, _) in self._records.items())
        return self._order

    def _cursor_url(self, page_number, position):
        return f'{self.url}?cursor={encode_cursor(page_number, position)}'

    def count_request(self, cursor):
        """Count a request for the page at `cursor`, whatever its answer will be."""
        try:
            page_number = 0 if cursor is None else decode_cursor(cursor)[0]
        except ValueError:
            return
        with self._lock:
            self.requests[page_number] += 1

    def page(self, cursor):
        """(body, fault) of the page at `cursor` (None: the first page)."""
        with self._lock:
            order = self._sorted()
            if cursor is None:
                page_number, start = 0, 0
            else:
                page_number, position = decode_cursor(cursor)
                # After the last record of the previous page: stable when records change meanwhile.
                start = bisect.bisect_right(order, position, key=lambda item: item[0])
            keys = order[start:start + self.source.page_size]
            rows = [self._records[key][1] for _, key in keys]
            has_next = start + self.source.page_size < len(order)
            fault = self._faults[page_number].popleft() if self._faults[page_number] else None
            if isinstance(fault, tuple) and fault[0] == RENAME:
                _, old, new = fault
                rows = [orjson.dumps({new if key == old else key: value for key, value in orjson.loads(row).items()})
                        for row in rows]
                fault = None
            next_url = self._cursor_url(page_number + 1, keys[-1][0]) if has_next else None
            previous = None if page_number == 0 else self._cursor_url(page_number - 1, keys[0][0] if keys else
                                                                      (datetime.datetime.min, ''))
        body = (b'{"next":' + orjson.dumps(next_url) + b',"previous":' + orjson.dumps(previous) + b',"results":['
                + b','.join(rows) + b']}')
        return body, fault


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
    """The server: `omis`, `contacts` and `investment_projects` are its Datasets."""

    def __init__(self, hawk_id, hawk_key, *, algorithm='sha256', page_size=1000, clock_skew=0,
                 host='127.0.0.1', port=0):
        self.credentials = {'id': hawk_id, 'key': hawk_key, 'algorithm': algorithm}
        self.page_size = page_size
        self.clock_skew = clock_skew  # seconds the server's clock is ahead of the client's
        self.lock = threading.Lock()
        self.datasets = {path: Dataset(self, path, key) for path, (_, key) in DATASETS.items()}
        for path, (attribute, _) in DATASETS.items():
            setattr(self, attribute, self.datasets[path])
        self._seen_nonce = _NonceStore()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = None

    def reset(self):
        """No records, no queued faults, no requests counted, in any dataset."""
        for dataset in self.datasets.values():
            dataset.reset()

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name='demo-source', daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        self._server.serve_forever()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _lookup(self, sender_id):
        if sender_id != self.credentials['id']:
            raise LookupError(sender_id)
        return self.credentials

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
                dataset = source.datasets.get(parsed.path.rstrip('/'))
                cursor = urllib.parse.parse_qs(parsed.query).get('cursor', [None])[0]
                if dataset is not None:
                    dataset.count_request(cursor)
                try:
                    receiver = mohawk.Receiver(
                        source._lookup, self.headers.get('Authorization', ''), url, 'GET', content=b'',
                        content_type=self.headers.get('Content-Type', ''), seen_nonce=source._seen_nonce,
                        localtime_offset_in_seconds=source.clock_skew,
                    )
                except mohawk.exc.TokenExpired:
                    # Data Hub (django-hawk) answers a stale timestamp with a plain 401: no
                    # `ts`/`tsm` to resynchronise with. See clock_skew_answers below.
                    if not source.clock_skew_answers:
                        return self._send(401, b'{"detail":"Incorrect authentication credentials."}')
                    now = int(time.time() + source.clock_skew)
                    tsm = mohawk.util.calculate_ts_mac(now, source.credentials).decode('ascii')
                    challenge = f'Hawk ts="{now}", tsm="{tsm}", error="Stale timestamp"'
                    return self._send(401, b'{"detail":"Stale timestamp"}', headers=[('WWW-Authenticate', challenge)])
                except mohawk.exc.HawkFail:
                    return self._send(401, b'{"detail":"Incorrect authentication credentials."}')

                if dataset is None:
                    return self._send(404, b'{"detail":"Not found."}')
                try:
                    body, fault = dataset.page(cursor)
                except ValueError:
                    return self._send(404, b'{"detail":"Invalid cursor"}')

                if isinstance(fault, Hold):
                    fault.hold()
                    fault = None
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

    # Whether a stale Hawk timestamp is answered with the server's signed time (mozilla's Hawk
    # servers do; Data Hub does not: a plain 401). Tests of the client's resynchronisation
    # set it; by default the demo answers as Data Hub does.
    clock_skew_answers = False


def main(argv=None):
    from devstack.datahub_records import RECORDS

    parser = argparse.ArgumentParser(prog='python -m devstack.source_api', description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8100)
    parser.add_argument('--rows', type=int, default=5000, help='records of each dataset')
    parser.add_argument('--page-size', type=int, default=1000)
    args = parser.parse_args(argv)
    config = settings.current()
    if not config.hawk_id or not config.hawk_key:
        parser.error('set HAWK_ID and HAWK_KEY')
    logging.basicConfig(level=logging.INFO)
    source = DemoSource(config.hawk_id, config.hawk_key, algorithm=config.hawk_algorithm,
                        page_size=args.page_size, host=args.host, port=args.port)
    for path, make in RECORDS.items():
        source.datasets[f'/v4/dataset/{path}'].put(*(make(i) for i in range(args.rows)))
    log.info('Serving %d records of each dataset at %s/v4/dataset/...', args.rows, source.url)
    source.serve_forever()


if __name__ == '__main__':
    main()
