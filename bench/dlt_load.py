"""dlt, the loader people would pick instead of data-flow, loading the same Hawk source into
the same PostgreSQL, configured as a user following dlt's REST API source docs would.

    run_dlt(source_url, hawk_id, hawk_key, datasets_dsn, table) -> dict

loads every record of `<source_url>/v4/dataset/omis-dataset` with dlt's `rest_api` source
(JSON-link paginator on `next`, data selector `results`, `write_disposition='replace'`) into
a dataset (PostgreSQL schema) of its own, named uniquely per call, and returns

    rows         rows in the table dlt made, counted in PostgreSQL afterwards
    seconds      wall clock of the dlt run in the child: building the source and pipeline,
                 extract, normalize and load (not the child's start and imports)
    rows_per_s   rows / seconds
    peak_rss_mb  the child's peak resident set (VmHWM), in MB
    process_seconds  the same seen from here: start the child, import dlt, run, exit
    table        the data table's name as dlt normalised it
    tables       every table dlt created in the dataset (data and its own bookkeeping)
    inspected    what the optional `inspect(conn, schema, table)` returned (None without one)

The dataset is dropped afterwards (DROP SCHEMA ... CASCADE, with dlt's `_staging` twin if
any), so runs do not see each other's tables.

The dlt run happens in a separate, spawned process: a fresh interpreter whose time and
memory are dlt's alone, not shared with (or copied from) whatever calls run_dlt.

What a user would write is `HawkAuth` and `load` below; settings are dlt's defaults except:
- DLT_DATA_DIR points at a temporary directory removed afterwards, so that pipeline state
  and working files do not pile up in ~/.dlt across bench runs (dlt's own Airflow helper
  does the same); it changes where dlt writes, not how.
- the Airflow secrets provider is off (PROVIDERS__ENABLE_AIRFLOW_SECRETS=false): Airflow
  shares this virtualenv, and dlt would otherwise import it and read each config value as
  an Airflow Variable; a user running dlt instead of data-flow has no Airflow.
- dlt's anonymous telemetry is off (RUNTIME__DLTHUB_TELEMETRY=false): the bench should not
  report to a third party, and on a machine without internet its sends would only fail.

Hawk: each request is signed with mohawk's Sender, and each 200 response's
Server-Authorization is verified against its body, as data-flow does, so that both loaders
do the same checks. The body goes to mohawk as a file object: given bytes, mohawk
pretty-prints the whole body into a debug message before checking its level, which would
make this a benchmark of pprint rather than of dlt.

    .venv/bin/python bench/dlt_load.py --rows 1000 100000
"""

import argparse
import io
import logging
import multiprocessing
import os
import queue
import secrets
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse
from functools import partial
from typing import Any, Callable, Optional

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

DATASET_PATH = 'v4/dataset/omis-dataset'


def load(source_url: str, hawk_id: str, hawk_key: str, dlt_postgres_url: str, dataset: str, table: str) -> Any:
    """The user's side: a rest_api source and a postgres pipeline, run once. Returns dlt's
    pipeline (for its schema's naming)."""
    # Imported here, not at the top, so that importing run_dlt into a bench driver does not
    # load dlt there too: only the child that runs it needs it.
    import dlt
    import mohawk
    import mohawk.exc
    import requests
    from dlt.common.configuration import configspec
    from dlt.common.typing import TSecretStrValue
    from dlt.sources.helpers.rest_client.auth import AuthConfigBase
    from dlt.sources.rest_api import RESTAPIConfig, rest_api_source

    @configspec
    class HawkAuth(AuthConfigBase):
        """Hawk: sign every request; refuse a 200 whose Server-Authorization does not match its body."""

        hawk_id: Optional[str] = None
        hawk_key: Optional[TSecretStrValue] = None
        algorithm: str = 'sha256'

        def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
            credentials = {'id': self.hawk_id, 'key': self.hawk_key, 'algorithm': self.algorithm}
            # A GET has no body and requests sends no Content-Type: sign exactly that.
            sender = mohawk.Sender(credentials, request.url, request.method, content='', content_type='')
            request.headers['Authorization'] = sender.request_header
            request.register_hook('response', partial(self._verify, sender))
            return request

        @staticmethod
        def _verify(sender: mohawk.Sender, response: requests.Response, **_: Any) -> requests.Response:
            if response.status_code != 200:
                return response  # error statuses come unsigned; dlt's client decides what they mean
            signature = response.headers.get('Server-Authorization')
            if not signature:
                raise mohawk.exc.MissingAuthorization('the response is not Hawk-signed (no Server-Authorization)')
            sender.accept_response(signature, content=io.BytesIO(response.content),
                                   content_type=response.headers.get('Content-Type', ''))
            return response

    config: RESTAPIConfig = {
        'client': {
            'base_url': source_url,
            'auth': HawkAuth(hawk_id=hawk_id, hawk_key=hawk_key),
            'paginator': {'type': 'json_link', 'next_url_path': 'next'},
        },
        'resource_defaults': {'write_disposition': 'replace'},
        'resources': [{'name': table, 'endpoint': {'path': DATASET_PATH, 'data_selector': 'results'}}],
    }
    pipeline = dlt.pipeline(
        pipeline_name=dataset, destination=dlt.destinations.postgres(credentials=dlt_postgres_url),
        dataset_name=dataset)
    pipeline.run(rest_api_source(config)).raise_on_failed_jobs()
    return pipeline


def _peak_rss_mb() -> float:
    # VmHWM belongs to this address space, which exec made new: unlike ru_maxrss it does not
    # carry over the high-water mark of the process that forked us.
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def _child(args: tuple, data_dir: str, results: multiprocessing.Queue) -> None:
    try:
        os.environ['DLT_DATA_DIR'] = data_dir
        os.environ['RUNTIME__DLTHUB_TELEMETRY'] = 'false'
        # With Airflow importable, dlt would look every config value up as an Airflow
        # Variable too (importing Airflow and opening its metadata database to do so). A
        # user loading with dlt instead of data-flow has no Airflow beside it; here it only
        # shares the virtualenv.
        os.environ['PROVIDERS__ENABLE_AIRFLOW_SECRETS'] = 'false'
        # mohawk warns on every verified response that it checks no nonce: a response's
        # nonce is the request's own, so there is nothing to check, and one line per page
        # would bury the output.
        logging.getLogger('mohawk').setLevel(logging.ERROR)
        # Imported before the clock starts: interpreter start-up is not the load.
        import dlt.sources.rest_api  # noqa: F401
        import mohawk  # noqa: F401

        started = time.perf_counter()
        pipeline = load(*args)
        seconds = time.perf_counter() - started
        table = pipeline.default_schema.naming.normalize_table_identifier(args[-1])
        results.put({'seconds': seconds, 'table': table, 'peak_rss_mb': _peak_rss_mb()})
    except BaseException:
        results.put({'error': traceback.format_exc()})
        raise


def dlt_postgres_url(dsn: str) -> str:
    """A libpq DSN (key=value or URL) as the postgresql:// URL dlt's postgres credentials take.

    dlt requires a password; with none in the DSN (trust, peer or ~/.pgpass) the URL says an
    empty one, which libpq takes as none at all."""
    params = psycopg2.extensions.parse_dsn(dsn)
    user = urllib.parse.quote(params.get('user', 'postgres'), safe='')
    password = urllib.parse.quote(params.get('password', ''), safe='')
    host, port = params.get('host', '127.0.0.1'), params.get('port', '5432')
    dbname = urllib.parse.quote(params.get('dbname', 'postgres'), safe='')
    if host.startswith('/'):  # a Unix socket directory (the embedded server) goes in the query
        return f'postgresql://{user}:{password}@/{dbname}?host={urllib.parse.quote(host, safe="/")}&port={port}'
    return f'postgresql://{user}:{password}@{host}:{port}/{dbname}'


def _schema_tables(conn: Any, schema: str) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute('SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1', (schema,))
        return [name for (name,) in cursor.fetchall()]


def run_dlt(source_url: str, hawk_id: str, hawk_key: str, datasets_dsn: str, table: str, *,
            inspect: Optional[Callable[[Any, str, str], Any]] = None) -> dict:
    """Load every OMIS record of the source into PostgreSQL with dlt, in a child process;
    see the module docstring for the keys returned. `inspect(conn, schema, table)`, if
    given, is called before the dataset is dropped; what it returns is under 'inspected'."""
    dataset = f'dlt_bench_{secrets.token_hex(4)}'
    data_dir = tempfile.mkdtemp(prefix='dataflow-bench-dlt-')
    context = multiprocessing.get_context('spawn')
    results: multiprocessing.Queue = context.Queue()
    args = (source_url, hawk_id, hawk_key, dlt_postgres_url(datasets_dsn), dataset, table)
    started = time.perf_counter()
    child = context.Process(target=_child, args=(args, data_dir, results), name='dlt-load')
    child.start()
    conn = psycopg2.connect(datasets_dsn)
    conn.autocommit = True
    try:
        while True:
            # Poll rather than block, so that a child killed before it could answer (OOM, a
            # failed import) ends the wait; a last look after its death catches an answer
            # still in the pipe.
            alive = child.is_alive()
            try:
                outcome = results.get(timeout=1)
                break
            except queue.Empty:
                if not alive:
                    raise RuntimeError(f'the dlt child died with exit code {child.exitcode} and no word') from None
        child.join()
        process_seconds = time.perf_counter() - started
        if 'error' in outcome:
            raise RuntimeError(f'the dlt load failed:\n{outcome["error"]}')
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(dataset, outcome['table'])))
            (rows,) = cursor.fetchone()
        return {
            'rows': rows,
            'seconds': outcome['seconds'],
            'rows_per_s': rows / outcome['seconds'],
            'peak_rss_mb': outcome['peak_rss_mb'],
            'process_seconds': process_seconds,
            'table': outcome['table'],
            'tables': _schema_tables(conn, dataset),
            'inspected': inspect(conn, dataset, outcome['table']) if inspect else None,
        }
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        with conn.cursor() as cursor:
            for schema in (dataset, f'{dataset}_staging'):
                cursor.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(schema)))
        conn.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _check_against_source(rows: int) -> Callable[[Any, str, str], Any]:
    """An `inspect` that compares a few loaded rows with the records the source served.
    Returns the table's columns (name, type) for the report."""
    import datetime

    from devstack.datahub_records import omis_record

    def check(conn: Any, schema: str, table: str) -> list[tuple[str, str]]:
        with conn.cursor() as cursor:
            for index in sorted({0, rows // 2, rows - 1}):
                record = omis_record(index)
                # dlt keeps Django's `__` keys as they are (company__name); `__` is also what
                # it would join a nested object's path with.
                cursor.execute(sql.SQL('SELECT id, created_on, company__name, services FROM {} WHERE reference = %s')
                               .format(sql.Identifier(schema, table)), (record['reference'],))
                found = cursor.fetchall()
                expected = (record['id'], datetime.datetime.fromisoformat(record['created_on'].replace('Z', '+00:00')),
                            record['company__name'], record['services'])
                if found != [expected]:
                    raise SystemExit(f'record {index} ({record["reference"]}): loaded {found}, the source sent {expected}')
            cursor.execute('SELECT column_name, data_type FROM information_schema.columns '
                           'WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position', (schema, table))
            return cursor.fetchall()

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, nargs='+', default=[1000, 100_000])
    parser.add_argument('--page-size', type=int, default=1000)
    parser.add_argument('--columns', action='store_true', help='also list the columns dlt made')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    # Run as a script, the repository root is not on sys.path (devstack lives there).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.demo_source import HAWK_ID, Source
    from devstack import services

    hawk_key = secrets.token_urlsafe(24)
    with services.postgres_server() as admin_dsn, \
            services.scratch_database(admin_dsn, 'dataflow_bench_dlt') as datasets_dsn:
        for rows in args.rows:
            with Source(hawk_key, rows, args.page_size, services.free_port()) as source:
                result = run_dlt(source.url, HAWK_ID, hawk_key, datasets_dsn, 'omis_dataset',
                                 inspect=_check_against_source(rows))
            if result['rows'] != rows:
                raise SystemExit(f'dlt loaded {result["rows"]} rows of the {rows} the source served')
            print(f'dlt (rest_api -> postgres)  {result["rows"]:,} rows in {result["seconds"]:.1f} s '
                  f'= {result["rows_per_s"]:,.0f} rows/s, peak RSS {result["peak_rss_mb"]:.0f} MB '
                  f'({result["process_seconds"]:.1f} s with the child\'s start-up; tables {", ".join(result["tables"])})')
            if args.columns:
                print('  ' + ', '.join(f'{name} {kind}' for name, kind in result['inspected']))


if __name__ == '__main__':
    main()
