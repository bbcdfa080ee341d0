"""A second kind of source auth, a bearer token (dataflow/sources/bearer.py), against a real
HTTP server that demands it: the run engine is the one Airflow runs, unchanged, which is
the proof that the source seam is right."""

import datetime
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.errors import RunFailed
from dataflow import settings
from dataflow.sources.bearer import BearerAuth
from dataflow.sources.connection import SourceConnection, source_for
from tests.support.runs import run_locally

TOKEN = 'test-bearer-token-5d1c9e'
RECORDS = [{'id': n, 'name': f'Station {n}', 'height': None if n % 7 == 0 else n * 10} for n in range(1, 26)]
PAGE_SIZE = 10


class TokenServer:
    """Pages of RECORDS as `{"next": relative URL or null, "results": [...]}`, only for
    requests bearing TOKEN; 401 otherwise. Remembers the Authorization headers it saw."""

    def __init__(self):
        self.seen = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.seen.append(self.headers.get('Authorization'))
                if self.headers.get('Authorization') != f'Bearer {TOKEN}':
                    return self.answer(401, {'detail': 'Authentication credentials were not provided.'})
                page = int(self.path.partition('page=')[2] or 0)
                rows = RECORDS[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
                more = (page + 1) * PAGE_SIZE < len(RECORDS)
                self.answer(200, {'next': f'?page={page + 1}' if more else None, 'results': rows})

            def answer(self, status, document):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.base_url = f'http://127.0.0.1:{self.http.server_address[1]}'
        self.url = self.base_url + '/stations'
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server():
    running = TokenServer()
    yield running
    running.close()


def stations():
    return dataset_pipeline_spec(type('StationsDatasetPipeline', (), {
        'table_name': 'stations', 'source_conn_id': 'stations', 'source_path': '/stations',
        'start_date': datetime.datetime(2024, 1, 1),
        'field_mapping': [('id', 'station_id', 'integer PRIMARY KEY'), ('name', 'station_name', 'text NOT NULL'),
                          ('height', 'height_m', 'integer')],
    }))


def client(server, token):
    """The source as a deployment makes it from its connection (extra: {"auth": "bearer"})."""
    connection = SourceConnection('stations', server.base_url, auth='bearer', password=token)
    return source_for(connection, settings.replaced(source_max_attempts=2, source_backoff_base=0.01))


def test_a_bearer_token_source_runs_through_the_same_engine(server, datasets_dsn, datasets_conn, caplog):
    with caplog.at_level(logging.DEBUG):
        result = run_locally(stations(), client(server, TOKEN), datasets_dsn, 'run-1')
    assert (result.pages, result.rows, result.published['rows_after']) == (3, 25, 25)
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT station_id, station_name, height_m FROM stations ORDER BY 1')
        assert cursor.fetchall() == [(r['id'], r['name'], r['height']) for r in RECORDS]
        cursor.execute('SELECT rows_after, source_url FROM dataflow.load_history')
        assert cursor.fetchall() == [(25, server.url)]
    datasets_conn.commit()
    assert server.seen == [f'Bearer {TOKEN}'] * 3
    assert TOKEN not in '\n'.join(r.getMessage() for r in caplog.records)
    assert TOKEN not in repr(client(server, TOKEN)) and isinstance(client(server, TOKEN).auth, BearerAuth)


def test_a_wrong_token_fails_the_run_naming_the_page(server, datasets_dsn):
    with pytest.raises(RunFailed, match=r"^StationsDatasetPipeline: page http://127.0.0.1:\d+/stations: HTTP 401: "
                                        r"connection 'stations' was refused: check its credentials"):
        run_locally(stations(), client(server, 'not-the-token'), datasets_dsn, 'run-1')
    assert len(server.seen) == 1  # a refusal is not retried
