"""Core library rates, as ratios to a plain `psql \\copy` of the same rows, in one run.

    .venv/bin/python bench/core_rates.py --rows 200000

Prints rows/s of: Hawk-signed fetch + verify + JSON parse (source in another process);
rendering records to COPY text; COPY of the rendered pages through psycopg2; render +
COPY together; and `psql \\copy` of the same rows from a file.
"""

import argparse
import gc
import io
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataflow import settings  # noqa: E402
from dataflow.definitions.datasets import dataset_pipeline_spec  # noqa: E402
from dataflow.load import catalog, ddl  # noqa: E402
from dataflow.load.copy import RecordRenderer, copy_page, copy_statement  # noqa: E402
from dataflow.load.strategies.replace import staging_table_name  # noqa: E402
from dataflow.pipelines.datasets import OMISDatasetPipeline  # noqa: E402
from dataflow.sources.connection import hawk_source  # noqa: E402
from devstack import services  # noqa: E402
from devstack.datahub_records import omis_record  # noqa: E402
from devstack.source_api import DemoSource  # noqa: E402

HAWK_ID = 'bench'


def serve(hawk_key, rows, page_size, ready):
    source = DemoSource(HAWK_ID, hawk_key, page_size=page_size)
    source.omis.put(*(omis_record(i) for i in range(rows)))
    ready.put(source.omis.url)
    source._server.serve_forever()


def rate(rows, seconds):
    return rows / seconds if seconds else float('inf')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rows', type=int, default=200_000)
    parser.add_argument('--page-size', type=int, default=1000)
    args = parser.parse_args()

    hawk_key = secrets.token_urlsafe(24)
    ready = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(hawk_key, args.rows, args.page_size, ready), daemon=True)
    server.start()
    url = ready.get(timeout=600)
    spec = dataset_pipeline_spec(OMISDatasetPipeline)
    renderer = RecordRenderer(spec.columns)
    figures = {}
    try:
        client = hawk_source(HAWK_ID, hawk_key, 'sha256', settings.current())
        client.get_page(url)  # open the connection
        # Timed as a task runs it: one page alive at a time. Keeping every page would
        # make the cyclic GC rescan a growing heap, a cost the tasks never pay.
        started = time.perf_counter()
        rows = body_bytes = page_count = 0
        for page in client.pages(url):
            rows += len(page.results)
            body_bytes += page.body_bytes
            page_count += 1
        figures['fetch + verify + parse'] = time.perf_counter() - started
        pages = list(client.pages(url))  # kept for the stages below, untimed
        gc.freeze()
    finally:
        server.terminate()
    assert rows == sum(len(p.results) for p in pages)

    started = time.perf_counter()
    payloads = [renderer.render(p.results, p.url) for p in pages]
    figures['render to COPY text'] = time.perf_counter() - started

    with services.postgres_server() as admin_dsn, services.scratch_database(admin_dsn, 'dataflow_bench') as dsn:
        conn = psycopg2.connect(dsn)

        def timed_copy(name, work):
            table = staging_table_name(spec.table_name, name)
            ddl.create_table(conn, table, spec.columns)
            conn.commit()
            started = time.perf_counter()
            with conn.cursor() as cursor:
                work(cursor, table)
            conn.commit()
            elapsed = time.perf_counter() - started
            assert catalog.row_count(conn, table) == rows
            return elapsed

        figures['COPY of rendered pages'] = timed_copy('copy', lambda cur, t: [
            cur.copy_expert(copy_statement(t, spec.columns), io.BytesIO(p)) for p in payloads])
        figures['render + COPY'] = timed_copy('render-copy', lambda cur, t: [
            copy_page(cur, t, renderer, p.results, p.url) for p in pages])

        with tempfile.NamedTemporaryFile(suffix='.copy') as rendered:
            for payload in payloads:
                rendered.write(payload)
            rendered.flush()
            table = staging_table_name(spec.table_name, 'psql')
            ddl.create_table(conn, table, spec.columns)
            conn.commit()
            columns = ', '.join(f'"{c.name}"' for c in spec.columns)
            command = f"\\copy \"{table}\" ({columns}) FROM '{rendered.name}'"
            started = time.perf_counter()
            subprocess.run(['psql', dsn, '-v', 'ON_ERROR_STOP=1', '-qc', command], check=True)
            figures['psql \\copy (reference)'] = time.perf_counter() - started
            assert catalog.row_count(conn, table) == rows
        conn.close()

    reference = rate(rows, figures['psql \\copy (reference)'])
    print(f'{rows} rows in {len(pages)} pages, {body_bytes / rows:.0f} bytes of JSON per row')
    print(f'{"stage":32} {"seconds":>8} {"rows/s":>10} {"x psql":>7}')
    for name, seconds in figures.items():
        print(f'{name:32} {seconds:8.2f} {rate(rows, seconds):10.0f} {rate(rows, seconds) / reference:7.2f}')


if __name__ == '__main__':
    main()
