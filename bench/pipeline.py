"""The dataset pipeline on a real Airflow stack (api-server, scheduler, dag-processor,
Celery worker), against a single-process baseline measured in the same run, with each
page store, and dlt beside it.

    .venv/bin/python bench/pipeline.py --rows 100000 1000000
    .venv/bin/python bench/pipeline.py --rows 100000 --stores variables --no-dlt
    .venv/bin/python bench/pipeline.py --rows 1000 --handoff      # + Variable hand-off vs plain JSON

For each page store (`--stores`: Airflow Variables, the default store, then a directory,
PAGE_STORE=file://..., the worker started again with it):
- a 1-page dataset: trigger to swapped, the median of `--small-runs` runs after a warm-up,
  and the timeline of its tasks (queued, started, ended): the fixed cost of a run;
- for each N of `--rows`, N OMIS-shaped rows (about 1.4 KB of JSON each, with nulls,
  timestamps, unicode) served by the Hawk demo source in a process of its own (bench.demo_source):
  - the baseline: one process, one thread, fetching every page with the same Hawk checks
    and COPYing it into a staging table, then swapping it in (`serial_baseline` below);
  - the pipeline: triggers OMISDatasetPipeline and reads its tasks' summaries;
  - with the first store, dlt loading the same source (bench.dlt_load), as a ratio to it.
It prints rows/s end to end (trigger to swapped) and as a ratio to the baseline, the time
of each stage, the peak RSS of the fetch and ingest task processes, and how long the swap
held its lock.
"""
import argparse
import collections
import datetime
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import importlib.metadata

import psutil
import psycopg2
from psycopg2 import sql

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataflow import settings  # noqa: E402
from dataflow.definitions.datasets import dataset_pipeline_spec  # noqa: E402
from dataflow.load import ddl  # noqa: E402
from dataflow.load.copy import RecordRenderer, copy_page  # noqa: E402
from dataflow.load.strategies.replace import staging_table_name, swap  # noqa: E402
from dataflow.pipelines.datasets import OMISDatasetPipeline  # noqa: E402
from dataflow.sources.connection import hawk_source  # noqa: E402
from devstack import services  # noqa: E402
from devstack.airflow_stack import AirflowStack  # noqa: E402
from bench.demo_source import HAWK_ID, Source  # noqa: E402
from bench.dlt_load import run_dlt  # noqa: E402

DAG_ID = 'OMISDatasetPipeline'
BASELINE_TABLE = 'omis_baseline'
HERE = os.path.dirname(os.path.abspath(__file__))
DLT_VERSION = importlib.metadata.version('dlt')


def _time(value):
    return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))


class TaskProfiler(threading.Thread):
    """py-spy on every task process the Celery worker starts (titled 'airflow worker --
    <task instance id>'), each into <directory>/<task instance id>.txt."""

    def __init__(self, worker_pid, directory):
        super().__init__(daemon=True)
        self.worker_pid, self.directory = worker_pid, directory
        self.done, self.seen, self.spies = threading.Event(), set(), []
        os.makedirs(directory, exist_ok=True)

    def run(self):
        while not self.done.is_set():
            for process in psutil.Process(self.worker_pid).children(recursive=True):
                try:
                    title = ' '.join(process.cmdline())
                except psutil.Error:
                    continue
                if title.startswith('airflow worker -- ') and process.pid not in self.seen:
                    self.seen.add(process.pid)
                    ti_id = title.split()[-1]
                    self.spies.append(subprocess.Popen(
                        [os.path.join(os.path.dirname(sys.executable), 'py-spy'), 'record', '--pid', str(process.pid),
                         '--format', 'raw', '--rate', '100', '--nonblocking',
                         '--output', os.path.join(self.directory, f'{ti_id}.txt')],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.2)

    def stop(self):
        self.done.set()
        self.join()
        for spy in self.spies:
            spy.wait(timeout=60)  # each ends, writing its file, when its process ends


def summarise_profiles(directory, task_ids, top=12):
    """Per task kind (fetch, ingest): the functions where the samples were, by self time,
    and the share of time under a few functions that matter."""
    kinds = {}
    for ti_id, task_id in task_ids.items():
        path = os.path.join(directory, f'{ti_id}.txt')
        if not os.path.exists(path) or not task_id.startswith(('fetch', 'ingest')):
            continue
        kind = kinds.setdefault(task_id.split('-')[0], collections.Counter())
        with open(path) as raw:
            for line in raw:
                stack, _, count = line.rstrip().rpartition(' ')
                frames = stack.split(';')
                kind[('self', frames[-1])] += int(count)
                for frame in set(frames):
                    kind[('under', frame)] += int(count)
                kind[('total', '')] += int(count)
    for kind, counts in kinds.items():
        total = counts[('total', '')]
        print(f'\nprofile of the {kind} task(s): {total} samples; self time by function')
        selfs = sorted(((n, f) for (k, f), n in counts.items() if k == 'self'), reverse=True)[:top]
        for count, frame in selfs:
            print(f'  {count / total:6.1%}  {frame[:110]}')


def run_pipeline(stack, rows, profile_to=None):
    run_id = f'bench-{rows}-{secrets.token_hex(3)}'
    profiler = None
    if profile_to:
        profiler = TaskProfiler(stack.processes['worker'].pid, profile_to)
        profiler.start()
    stack.api.trigger(DAG_ID, run_id=run_id)
    run = stack.api.wait_run(DAG_ID, run_id, timeout=7200)
    if profiler:
        profiler.stop()
    if run['state'] != 'success':
        states = stack.api.task_states(DAG_ID, run_id)
        for task, state in states.items():
            if state == 'failed':
                print(f'--- log of {task}:\n{stack.api.task_log(DAG_ID, run_id, task)[-3000:]}')
        raise SystemExit(f'{run_id} failed: {states}')
    instances = {ti['task_id']: ti for ti in stack.api.task_instances(DAG_ID, run_id)}
    triggered = _time(run['queued_at'] or run['start_date'])
    to_swap = (_time(instances['swap']['end_date']) - triggered).total_seconds()
    ingest = [stack.api.xcom(DAG_ID, run_id, task) for task in instances if task.startswith('ingest-')]
    return {
        'task_ids': {ti['id']: task for task, ti in instances.items()},
        'seconds': to_swap,
        'fetch': stack.api.xcom(DAG_ID, run_id, 'fetch'),
        'ingest': ingest,
        'swap': stack.api.xcom(DAG_ID, run_id, 'swap'),
        'timeline': timeline(run, triggered, instances),
    }


def timeline(run, triggered, instances):
    """Seconds from the trigger at which the run started and each task was queued,
    started and ended: where a run's fixed cost goes."""
    def at(value):
        return round((_time(value) - triggered).total_seconds(), 2) if value else None

    return {'run started': at(run['start_date']),
            **{task: (at(ti.get('queued_when')), at(ti['start_date']), at(ti['end_date']))
               for task, ti in sorted(instances.items(), key=lambda item: item[1]['start_date'] or '')}}


def print_timeline(figures):
    print(f'  run started {figures["run started"]:.2f} s after the trigger; per task: queued, started, ended (s)')
    for task, times in figures.items():
        if task != 'run started':
            queued, started, ended = times
            print(f'  {task:24} {queued!s:>7} {started!s:>7} {ended!s:>7}   '
                  f'queued->started {started - queued if queued is not None else 0:.2f}, ran {ended - started:.2f}')


def serial_baseline(spec, client, conn):
    """One thread doing what the pipeline does, one page after another: fetch (with the same
    Hawk checks), render, COPY into a staging table; then swap it in. Rows per second."""
    started = time.perf_counter()
    staging = staging_table_name(spec.table_name, secrets.token_hex(4))
    renderer = RecordRenderer(spec.columns)
    ddl.create_table(conn, staging, spec.columns)
    rows = 0
    with conn.cursor() as cursor:
        for page in client.pages(client.url_for(spec.source_path)):
            rows += copy_page(cursor, staging, renderer, page.results, page.url)
    conn.commit()
    swap(conn, staging, spec.table_name)
    return rows / (time.perf_counter() - started)


def run_baseline(source_url, hawk_key, datasets_dsn):
    spec = dataset_pipeline_spec(type(DAG_ID, (OMISDatasetPipeline,), {
        'table_name': BASELINE_TABLE, 'min_rows_ratio': None}))
    client = hawk_source(HAWK_ID, hawk_key, 'sha256', settings.current(), base_url=source_url)
    conn = psycopg2.connect(datasets_dsn)
    try:
        return serial_baseline(spec, client, conn)
    finally:
        conn.close()


def report_dlt(rows, baseline, dlt):
    if dlt['rows'] != rows:
        raise SystemExit(f'dlt loaded {dlt["rows"]} rows of {rows}')
    print(f'dlt {DLT_VERSION} (rest_api -> postgres) {dlt["rows_per_s"]:10,.0f} rows/s  ({dlt["seconds"]:.1f} s)  '
          f'= {dlt["rows_per_s"] / baseline:.2f} x baseline; peak RSS {dlt["peak_rss_mb"]:.0f} MB '
          '(its rest_api source and postgres destination as its docs configure them, on the same source)')


def fresh_tables(datasets_dsn):
    """Drop the tables of earlier runs and flush what they left in PostgreSQL's buffers, so
    that the next figures pay neither for dropping an earlier run's table nor for writing
    out its pages (a 1M-row run leaves more than a GB to checkpoint)."""
    conn = psycopg2.connect(datasets_dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            for table in (OMISDatasetPipeline.table_name, BASELINE_TABLE):
                cursor.execute(sql.SQL('DROP TABLE IF EXISTS {}').format(sql.Identifier(table)))
            cursor.execute('CHECKPOINT')
    finally:
        conn.close()


def report(rows, baseline, pipeline):
    fetch, ingest, swap = pipeline['fetch'], pipeline['ingest'], pipeline['swap']
    rate = rows / pipeline['seconds']
    busy = [i for i in ingest if i['pages']]
    print(f'\n== {rows:,} rows, {fetch["pages"]} pages ==')
    print(f'single-process baseline      {baseline:10,.0f} rows/s')
    print(f'pipeline, trigger -> swapped {rate:10,.0f} rows/s  ({pipeline["seconds"]:.1f} s)  '
          f'= {rate / baseline:.2f} x baseline')
    print(f'fetch task                   {fetch["seconds"]:8.1f} s: render+encode {fetch["render_seconds"]:.1f} s, '
          f'storing+ledger {fetch["store_seconds"]:.1f} s, fetching the rest; '
          f'{fetch["source_bytes"] / 1e6:.0f} MB of JSON stored as {fetch["stored_bytes"] / 1e6:.0f} MB '
          f'in {fetch["stored_values"]} values')
    print(f'ingest tasks ({len(busy)} loaded)      reads+decode {sum(i["read_seconds"] for i in ingest):.1f} s, '
          f'COPY+commit {sum(i["copy_seconds"] for i in ingest):.1f} s (summed over tasks); '
          f'pages per task {sorted(i["pages"] for i in ingest)}')
    print(f'peak RSS                     fetch {fetch["peak_rss_mb"]:.0f} MB, ingest max '
          f'{max(i["peak_rss_mb"] for i in ingest):.0f} MB')
    print(f'swap                         lock held {swap["lock_ms"]:.1f} ms; {swap["rows_before"]} -> {swap["rows_after"]} rows')
    times = pipeline['timeline']
    last_ingest = max(times[task][2] for task in times if task.startswith('ingest-'))
    print(f'timeline (s after trigger)   fetch {times["fetch"][1]:.1f}-{times["fetch"][2]:.1f}, last ingest ended '
          f'{last_ingest:.1f}, swap queued {times["swap"][0]:.1f}, ended {times["swap"][2]:.1f}')


def one_page(stack, hawk_key, source_port, page_size, runs):
    """The fixed cost of a run: a 1-page dataset, trigger to swapped, after a warm-up run
    (the stack's first run pays for first connections); the median of `runs` runs, and
    the timeline of the median one."""
    source = Source(hawk_key, page_size, page_size, source_port)
    try:
        run_pipeline(stack, page_size)
        measured = sorted((run_pipeline(stack, page_size) for _ in range(runs)), key=lambda p: p['seconds'])
    finally:
        source.stop()
    median = measured[len(measured) // 2]
    print(f'\n== 1 page ({page_size} rows) ==')
    each = ', '.join(f'{p["seconds"]:.1f}' for p in measured)
    print(f'pipeline, trigger -> swapped {median["seconds"]:.1f} s, median of {runs} ({each}); '
          'issue 16 measured 16.3 s before this work')
    print_timeline(median['timeline'])


def handoff_benchmark(stack, pages):
    run_id = f'handoff-{secrets.token_hex(3)}'
    stack.api.trigger('dataflow_handoff_bench', run_id=run_id, conf={'pages': pages})
    if stack.api.wait_run('dataflow_handoff_bench', run_id)['state'] != 'success':
        raise SystemExit('the hand-off benchmark failed')
    figures = stack.api.xcom('dataflow_handoff_bench', run_id, 'measure')
    figures = json.loads(figures) if isinstance(figures, str) else figures
    print(f'\nVariable hand-off, {pages} pages of 1000 OMIS records, in one task:')
    print(f'{"encoding":30} {"stored KB":>10} {"set/s":>7} {"get/s":>7} {"delete/s":>9} {"rows/s":>8}')
    for name, f in figures.items():
        print(f'{name:30} {f["stored_kb"]:10.1f} {f["set_per_s"]:7.1f} {f["get_per_s"]:7.1f} '
              f'{f["delete_per_s"]:9.1f} {f["handoff_rows_per_s"]:8d}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, nargs='+', default=[100_000, 1_000_000])
    parser.add_argument('--page-size', type=int, default=1000)
    parser.add_argument('--worker-concurrency', type=int, default=5, help='fetch + INGEST_TASK_CONCURRENCY')
    parser.add_argument('--ingest-concurrency', type=int, default=4)
    parser.add_argument('--stores', nargs='+', default=['variables', 'directory'],
                        help='page stores to run with: variables (the default store; first), directory')
    parser.add_argument('--no-dlt', dest='dlt', action='store_false', help='do not run dlt beside the pipeline')
    parser.add_argument('--small-runs', type=int, default=3, help='1-page runs to take the median of')
    parser.add_argument('--handoff', action='store_true', help='also time the Variable hand-off vs plain JSON')
    parser.add_argument('--profile', metavar='DIR', help='py-spy the task processes of the largest run into DIR')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    hawk_key = secrets.token_urlsafe(24)
    source_port = services.free_port()
    dags = tempfile.mkdtemp(prefix='dataflow-bench-dags-')
    try:
        shutil.copy(os.path.join(HERE, 'dags', 'handoff_bench.py'), dags)
        with open(os.path.join(dags, 'dataset_pipelines.py'), 'w') as dag_file:
            # Airflow parses only files that mention both "airflow" and "dag".
            dag_file.write('# The real airflow DAGs of data-flow.\n'
                           'from dataflow.airflow.dags.dataset_pipelines import *  # noqa: F401,F403\n')
        with services.postgres_server() as admin_dsn, services.redis_server() as redis_url, \
                services.scratch_database(admin_dsn, 'dataflow_bench_meta') as metadata_dsn, \
                services.scratch_database(admin_dsn, 'dataflow_bench_data') as datasets_dsn, \
                tempfile.TemporaryDirectory(prefix='dataflow-bench-home-') as home:
            stack = AirflowStack(
                home, services.url_for(metadata_dsn), redis_url, services.free_port(),
                worker_concurrency=args.worker_concurrency,
                broker_key_prefix=f'dataflow-bench-{secrets.token_hex(4)}:', dags_folder=dags,
                env={'HAWK_ID': HAWK_ID, 'HAWK_KEY': hawk_key, 'DATAHUB_BASE_URL': f'http://127.0.0.1:{source_port}',
                     'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn), 'PIPELINE_SCHEDULES_ENABLED': 'false',
                     'INGEST_TASK_CONCURRENCY': str(args.ingest_concurrency),
                     # The hand-off DAG imports devstack, which is not installed: it is found here.
                     'PYTHONPATH': os.path.dirname(HERE)},
            )
            with stack, tempfile.TemporaryDirectory(prefix='dataflow-bench-pages-') as pages:
                stack.api.wait_dag(DAG_ID)
                stores = {'variables': {}, 'directory': {'PAGE_STORE': f'file://{pages}'}}
                for number, store in enumerate(args.stores):
                    if number:  # the page store is the workers' setting: start the worker again with it
                        stack.stop_component('worker')
                        stack.start_component('worker', env=stores[store])
                    elif stores[store]:
                        raise SystemExit(f'the first store must be the default one, variables; got {store}')
                    print(f'\n######## page store: {store} {stores[store].get("PAGE_STORE", "(Airflow Variables)")}')
                    fresh_tables(datasets_dsn)  # also: a 1-page run after a 1M-row one fails the row-count gate
                    one_page(stack, hawk_key, source_port, args.page_size, args.small_runs)
                    for rows in args.rows:
                        source = Source(hawk_key, rows, args.page_size, source_port)
                        fresh_tables(datasets_dsn)
                        try:
                            baseline = run_baseline(source.url, hawk_key, datasets_dsn)
                            fresh_tables(datasets_dsn)
                            profile_to = (os.path.join(args.profile, store)
                                          if args.profile and rows == max(args.rows) else None)
                            pipeline = run_pipeline(stack, rows, profile_to)
                            report(rows, baseline, pipeline)
                            if args.dlt and number == 0:
                                fresh_tables(datasets_dsn)
                                report_dlt(rows, baseline, run_dlt(source.url, HAWK_ID, hawk_key, datasets_dsn,
                                                                   'omis_dlt'))
                        finally:
                            source.stop()
                        if profile_to:
                            print('(profiled: py-spy samples every task process, which slows the run)')
                            summarise_profiles(profile_to, pipeline['task_ids'])
                if args.handoff:
                    stack.api.wait_dag('dataflow_handoff_bench')
                    handoff_benchmark(stack, 30)
    finally:
        shutil.rmtree(dags, ignore_errors=True)


if __name__ == '__main__':
    main()
