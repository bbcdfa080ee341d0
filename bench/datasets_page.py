"""The Datasets list (dataflow.airflow.ui) with many pipelines and a long load history, on a
real api-server, against a baseline measured in the same run: Airflow's own DAG list
(`/api/v2/dags`) of the same DAGs on the same server.

    .venv/bin/python bench/datasets_page.py --pipelines 200 --loads 10000

It generates a package of N dataset pipeline classes (on PIPELINE_PACKAGES), lets the
dag-processor parse their DAGs, triggers one run of each (so each has a last run), writes
the load history, then times each page and API call (median of --repeat requests, after
one warm-up) and prints milliseconds and the ratio to the baseline. Target: the list
answers in under 300 ms with 200 pipelines and 10,000 loads.
"""

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import textwrap
import time

import psycopg2
import psycopg2.extras
import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataflow.runs import ledger  # noqa: E402
from devstack import services  # noqa: E402
from devstack.airflow_stack import AirflowStack  # noqa: E402

PACKAGE = 'bench_pipelines'


def write_pipelines(directory, count):
    package = os.path.join(directory, PACKAGE)
    os.makedirs(package)
    with open(os.path.join(package, '__init__.py'), 'w') as init:
        init.write('')
    classes = '\n\n'.join(textwrap.dedent(f'''
        class Bench{n:03d}DatasetPipeline:
            """Benchmark pipeline {n}."""
            table_name = 'bench_{n:03d}'
            source_path = '/v4/dataset/bench-{n:03d}'
            start_date = datetime(2024, 1, 1)
            schedule_interval = '@daily'
            field_mapping = [('id', 'id', 'uuid PRIMARY KEY')] + [
                (f'field_{{i}}', f'column_{{i}}', 'text') for i in range(14)]
        ''') for n in range(count))
    with open(os.path.join(package, 'pipelines.py'), 'w') as module:
        module.write('from datetime import datetime\n\n' + classes + '\n')


def write_history(dsn, count, loads):
    conn = psycopg2.connect(dsn)
    ledger.ensure_schema(conn)
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for n in range(loads):
        table = n % count
        finished = now - datetime.timedelta(hours=loads - n)
        rows.append((f'bench_{table:03d}', f'Bench{table:03d}DatasetPipeline', f'run-{n}', 1000 + n, 1000 + n + 7,
                     f'http://source/bench-{table:03d}', finished - datetime.timedelta(seconds=40), finished,
                     12.5, ['w'] if n % 50 == 0 else []))
    with conn.cursor() as cursor:
        psycopg2.extras.execute_values(cursor, """
            INSERT INTO dataflow.load_history (table_name, pipeline, run_key, rows_before, rows_after, source_url,
                                               started_at, finished_at, lock_ms, warnings) VALUES %s""", rows)
    conn.commit()
    conn.close()


def timed(session, url, repeat):
    session.get(url, timeout=120).raise_for_status()  # warm-up: caches, first imports
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = session.get(url, timeout=120)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return statistics.median(seconds) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--pipelines', type=int, default=200)
    parser.add_argument('--loads', type=int, default=10000)
    parser.add_argument('--repeat', type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='dataflow-bench-ui-') as scratch, \
            services.postgres_server() as admin_dsn, \
            services.scratch_database(admin_dsn, 'dataflow_bench_ui_meta') as metadata_dsn, \
            services.scratch_database(admin_dsn, 'dataflow_bench_ui_data') as datasets_dsn:
        write_pipelines(scratch, args.pipelines)
        write_history(datasets_dsn, args.pipelines, args.loads)
        stack = AirflowStack(
            os.path.join(scratch, 'home'), services.url_for(metadata_dsn), 'redis://127.0.0.1:1/0',
            services.free_port(), components=('api-server', 'dag-processor'),
            env={'PYTHONPATH': scratch, 'PIPELINE_PACKAGES': PACKAGE, 'PIPELINE_SCHEDULES_ENABLED': 'false',
                 'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn)})
        with stack:
            last = f'Bench{args.pipelines - 1:03d}DatasetPipeline'
            stack.api.wait_dag(last, timeout=600)
            for n in range(args.pipelines):
                stack.api.trigger(f'Bench{n:03d}DatasetPipeline')  # queued (no scheduler): a last run each
            session = requests.Session()
            session.headers['Authorization'] = f'Bearer {requests.get(stack.base_url + "/auth/token").json()["access_token"]}'
            listed = session.get(f'{stack.base_url}/dataflow/api/datasets', timeout=120).json()['datasets']
            assert len(listed) == args.pipelines and all(d['last_run'] for d in listed), 'not every pipeline is listed'
            base = timed(session, f'{stack.base_url}/api/v2/dags?limit={args.pipelines}', args.repeat)
            figures = {
                'Datasets list, JSON (/dataflow/api/datasets)': timed(session, f'{stack.base_url}/dataflow/api/datasets',
                                                                       args.repeat),
                'Datasets list, page (/dataflow/datasets)': timed(session, f'{stack.base_url}/dataflow/datasets',
                                                                   args.repeat),
                'one dataset page': timed(session, f'{stack.base_url}/dataflow/datasets/Bench000DatasetPipeline',
                                          args.repeat),
            }
    print(f'\n{args.pipelines} pipelines, {args.loads:,} load-history rows; median of {args.repeat} requests')
    print(f'{"baseline: Airflow DAG list (/api/v2/dags)":48} {base:8.1f} ms')
    for name, ms in figures.items():
        print(f'{name:48} {ms:8.1f} ms  = {ms / base:4.2f} x baseline'
              + ('   (target: under 300 ms)' if 'list' in name else ''))


if __name__ == '__main__':
    main()
