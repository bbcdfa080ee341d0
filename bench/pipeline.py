"""The dataset pipeline on a real Airflow stack (scheduler, Celery worker, api-server):
wall time from trigger to swap, and the Variable hand-off with data-flow's page encoding
against plain JSON.

    .venv/bin/python bench/pipeline.py --rows 1000 100000
"""

import argparse
import datetime
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataflow.demo import services  # noqa: E402
from dataflow.demo.airflow_stack import AirflowStack  # noqa: E402
from dataflow.demo.omis_records import omis_record  # noqa: E402
from dataflow.demo.source_api import DemoSource  # noqa: E402

DAG_ID = 'OMISDatasetPipeline'
HERE = os.path.dirname(os.path.abspath(__file__))


def _time(value):
    return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))


def run_once(stack, rows):
    run_id = f'bench-{rows}-{secrets.token_hex(3)}'
    triggered = time.monotonic()
    stack.api.trigger(DAG_ID, run_id=run_id)
    run = stack.api.wait_run(DAG_ID, run_id, timeout=3600)
    observed = time.monotonic() - triggered
    if run['state'] != 'success':
        raise SystemExit(f'{run_id} failed: {stack.api.task_states(DAG_ID, run_id)}')
    instances = {ti['task_id']: ti for ti in stack.api.task_instances(DAG_ID, run_id)}
    run_start = _time(run['queued_at'] or run['start_date'])
    to_swap = (_time(instances['swap']['end_date']) - run_start).total_seconds()
    fetch = stack.api.xcom(DAG_ID, run_id, 'fetch')
    swap = stack.api.xcom(DAG_ID, run_id, 'swap')
    return to_swap, observed, fetch, swap


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--rows', type=int, nargs='+', default=[1000, 100_000])
    parser.add_argument('--page-size', type=int, default=1000)
    parser.add_argument('--handoff-pages', type=int, default=30)
    parser.add_argument('--worker-concurrency', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=2, help='runs per size')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    hawk_key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix='dataflow-bench-dags-') as dags:
        run_benchmark(args, hawk_key, dags)


def run_benchmark(args, hawk_key, dags):
    shutil.copy(os.path.join(HERE, 'dags', 'handoff_bench.py'), dags)
    with open(os.path.join(dags, 'dataset_pipelines.py'), 'w') as dag_file:
        # Airflow parses only files that mention both "airflow" and "dag".
        dag_file.write('# The real airflow DAGs of data-flow.\n'
                       'from dataflow.dags.dataset_pipelines import *  # noqa: F401,F403\n')
    with services.postgres_server() as admin_dsn, services.redis_server() as redis_url, \
            services.scratch_database(admin_dsn, 'dataflow_bench_meta') as metadata_dsn, \
            services.scratch_database(admin_dsn, 'dataflow_bench_data') as datasets_dsn, \
            DemoSource('bench', hawk_key, page_size=args.page_size) as source, \
            tempfile.TemporaryDirectory(prefix='dataflow-bench-home-') as home:
        stack = AirflowStack(
            home, services.url_for(metadata_dsn), redis_url, services.free_port(),
            worker_concurrency=args.worker_concurrency, broker_key_prefix=f'dataflow-bench-{secrets.token_hex(4)}:',
            dags_folder=dags,
            env={'HAWK_ID': 'bench', 'HAWK_KEY': hawk_key, 'DATAHUB_BASE_URL': source.url,
                 'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn), 'PIPELINE_SCHEDULES_ENABLED': 'false'},
        )
        with stack:
            stack.api.wait_dag(DAG_ID)
            stack.api.wait_dag('dataflow_handoff_bench')
            source.put(*(omis_record(i) for i in range(args.page_size)))
            run_once(stack, args.page_size)  # warm-up: the first task runs start the worker's processes
            print(f'{"rows":>9} {"pages":>6} {"trigger->swap s":>16} {"observed s":>11} {"rows/s":>8} '
                  f'{"fetch s":>8} {"swap lock ms":>13}')
            for rows in args.rows:
                source.reset()
                source.put(*(omis_record(i) for i in range(rows)))
                for _ in range(args.repeat):
                    to_swap, observed, fetch, swap = run_once(stack, rows)
                    print(f'{rows:9d} {fetch["pages"]:6d} {to_swap:16.1f} {observed:11.1f} {rows / to_swap:8.0f} '
                          f'{fetch["seconds"]:8.1f} {swap["lock_ms"]:13.1f}')

            run_id = f'handoff-{secrets.token_hex(3)}'
            stack.api.trigger('dataflow_handoff_bench', run_id=run_id, conf={'pages': args.handoff_pages})
            if stack.api.wait_run('dataflow_handoff_bench', run_id)['state'] != 'success':
                raise SystemExit('the hand-off benchmark failed')
            handoff = stack.api.xcom('dataflow_handoff_bench', run_id, 'measure')
            if isinstance(handoff, str):
                handoff = json.loads(handoff)
            print(f'\nVariable hand-off, {args.handoff_pages} pages of 1000 OMIS records, in one task:')
            print(f'{"encoding":30} {"stored KB":>10} {"set/s":>7} {"get/s":>7} {"delete/s":>9} {"rows/s":>8}')
            for name, figures in handoff.items():
                print(f'{name:30} {figures["stored_kb"]:10.1f} {figures["set_per_s"]:7.1f} '
                      f'{figures["get_per_s"]:7.1f} {figures["delete_per_s"]:9.1f} {figures["handoff_rows_per_s"]:8d}')
            plain, ours = handoff['plain JSON'], handoff['data-flow (COPY text, zstd)']
            print(f'data-flow encoding / plain JSON: {ours["handoff_rows_per_s"] / plain["handoff_rows_per_s"]:.1f}x '
                  'hand-off throughput')


if __name__ == '__main__':
    main()
