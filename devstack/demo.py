"""The demo: the OMIS pipeline end to end on a local Airflow 3 stack.

Starts (or reuses) PostgreSQL and Redis, serves generated records of Data Hub's three
datasets in Data Hub's shapes from the Hawk-signed demo source, starts the Airflow
api-server, scheduler, dag-processor, triggerer and a Celery worker, triggers the
OMISDatasetPipeline DAG, prints its progress until it is swapped in, and how to look at
the data. The stack keeps running until Ctrl-C (or --exit); the other pipelines can be
triggered from the UI.
"""

import argparse
import logging
import os
import secrets
import shlex
import signal
import sys
import time

import psycopg2

from dataflow import settings
from dataflow.load import localdb
from dataflow.runs import ledger, pagestore
from devstack import services
from devstack.airflow_stack import AirflowStack
from devstack.datahub_records import RECORDS
from devstack.source_api import DemoSource

DAG_ID = 'OMISDatasetPipeline'
log = logging.getLogger('devstack.demo')


def ensure_database(admin_dsn, name, fresh=False):
    if fresh:
        services.drop_database(admin_dsn, name)
    conn = psycopg2.connect(admin_dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute('SELECT 1 FROM pg_database WHERE datname = %s', (name,))
            exists = cursor.fetchone() is not None
    finally:
        conn.close()
    return services.database_dsn(admin_dsn, name) if exists else services.create_database(admin_dsn, name)


def port_or_free(port):
    import socket

    with socket.socket() as probe:
        # As the servers will: a port left in TIME_WAIT by an earlier run is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(('127.0.0.1', port))
        except OSError:
            return services.free_port()
    return port


# How often the demo looks at the run while it waits (the ledger, and the task states).
WATCH_SECONDS = 2.0


def _task_summary(states):
    """'fetch running; ingest-0..3 queued', from {task id: state}."""
    by_state = {}
    for task_id, state in states.items():
        by_state.setdefault(state or 'not scheduled yet', []).append(task_id)
    order = ('running', 'queued', 'scheduled', 'up_for_reschedule', 'up_for_retry', 'not scheduled yet')
    parts = []
    for state in order:
        names = by_state.get(state)
        if names:
            ingest = sorted(n for n in names if n.startswith('ingest-'))
            others = [n for n in names if not n.startswith('ingest-')]
            if len(ingest) > 1:
                others.append(f'{ingest[0]}..{ingest[-1].rpartition("-")[2]}')
            else:
                others += ingest
            parts.append(f'{", ".join(others)} {state.replace("_", " ")}')
    return '; '.join(parts) or 'waiting for the scheduler'


def watch(api, datasets_dsn, dag_id, run_id, timeout, out=sys.stdout):
    """Wait for the run, printing its progress (from the ledger, and the task states
    before anything is fetched) whenever it changes. Returns the finished run."""
    run_key = pagestore.run_key(dag_id, run_id, 0)
    started = time.monotonic()
    last = None
    conn = psycopg2.connect(datasets_dsn)
    try:
        while True:
            run = api.dag_run(dag_id, run_id)
            progress = ledger.progress(conn, run_key)
            if progress is None or (progress.pages_fetched == 0 and not progress.swapped):
                line = _task_summary(api.task_states(dag_id, run_id))
            else:
                elapsed = time.monotonic() - started
                line = progress.describe() + ('; swapped' if progress.swapped else '')
                if not progress.swapped and progress.rows_loaded:
                    line += f' ({progress.rows_loaded / elapsed:,.0f} rows/s since the trigger)'
            if line != last:
                print(f'{time.strftime("%H:%M:%S")} [{time.monotonic() - started:4.0f} s] {line}', file=out,
                      flush=True)
                last = line
            if run['state'] in ('success', 'failed'):
                return run
            if time.monotonic() - started > timeout:
                raise TimeoutError(f'{dag_id} run {run_id} still {run["state"]} after {timeout} s')
            time.sleep(WATCH_SECONDS)
    finally:
        conn.close()


def look_at_the_data(args, datasets_dsn, embedded):
    """Commands that show the loaded data on this machine, whatever it has installed."""
    state = [] if os.path.realpath(args.state_dir) == os.path.realpath(settings.current().dataflow_state_dir) else [
        f'DATAFLOW_STATE_DIR={shlex.quote(args.state_dir)}']
    dataflow = ' '.join(state + [os.path.relpath(os.path.join(os.path.dirname(sys.executable), 'dataflow'))])
    lines = ['The data (these find the demo\'s database by themselves, also after the demo has stopped):',
             f'  {dataflow} list                        pipelines and when each last loaded',
             f'  {dataflow} show OMISDatasetPipeline    its columns, row count and first rows']
    if not args.exit:
        psql = localdb.embedded_psql() if embedded else 'psql'
        lines.append(f'  {shlex.quote(psql)} {shlex.quote(services.url_for(datasets_dsn))}    '
                     '(while the demo runs)')
    return '\n'.join(lines)


def _is_embedded(admin_dsn, state_dir):
    """Whether the server is the embedded one (it listens on a socket in its data directory)."""
    host = psycopg2.extensions.parse_dsn(admin_dsn).get('host', '')
    return host.startswith('/') and os.path.realpath(host) == os.path.realpath(services.embedded_data_dir(state_dir))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='bin/demo', description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=5000, help='records of each dataset the demo source serves')
    parser.add_argument('--port', type=int, default=8080, help='Airflow UI and API port (another if taken)')
    parser.add_argument('--source-port', type=int, default=8100, help='demo source port (another if taken)')
    parser.add_argument('--datasets-db', default='dataflow_demo')
    parser.add_argument('--metadata-db', default='dataflow_demo_airflow', help='recreated on every demo run')
    parser.add_argument('--state-dir', default=settings.current().dataflow_state_dir)
    parser.add_argument('--exit', action='store_true', help='stop everything once the run has finished')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', datefmt='%H:%M:%S')
    for noisy in ('devstack.source_api', 'urllib3', 'pgserver'):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    hawk_id, hawk_key = 'demo', secrets.token_urlsafe(24)
    started = time.monotonic()
    with services.postgres_server(state_dir=args.state_dir) as admin_dsn, services.redis_server() as redis_url, \
            DemoSource(hawk_id, hawk_key, port=port_or_free(args.source_port)) as source:
        for path, make in RECORDS.items():
            source.datasets[f'/v4/dataset/{path}'].put(*(make(i) for i in range(args.rows)))
        log.info('Demo source serving %d records of each Data Hub dataset (OMIS, contacts, investment projects) '
                 'at %s/v4/dataset/', args.rows, source.url)
        metadata_dsn = ensure_database(admin_dsn, args.metadata_db, fresh=True)
        datasets_dsn = ensure_database(admin_dsn, args.datasets_db)
        embedded = _is_embedded(admin_dsn, args.state_dir)
        # So that `dataflow list`, `dataflow show` ... find this database by themselves.
        localdb.record(datasets_dsn, services.embedded_data_dir(args.state_dir) if embedded else None,
                       state_dir=args.state_dir)
        stack = AirflowStack(
            os.path.join(args.state_dir, 'airflow'), services.url_for(metadata_dsn), redis_url,
            port_or_free(args.port), broker_key_prefix='dataflow-demo:',
            env={
                'HAWK_ID': hawk_id,
                'HAWK_KEY': hawk_key,
                'DATAHUB_BASE_URL': source.url,
                'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn),
                'PIPELINE_SCHEDULES_ENABLED': 'false',
            },
        )
        log.info('Starting Airflow (api-server, scheduler, dag-processor, triggerer, Celery worker); logs in %s',
                 os.path.join(stack.home, 'logs'))
        with stack:
            stack.api.wait_dag(DAG_ID)
            run_id = f'demo-{time.strftime("%Y%m%dT%H%M%S")}'
            triggered = time.monotonic()
            stack.api.trigger(DAG_ID, run_id=run_id)
            log.info('Triggered %s run %s; the UI shows it at %s/dags/%s/runs/%s', DAG_ID, run_id, stack.base_url,
                     DAG_ID, run_id)
            run = watch(stack.api, datasets_dsn, DAG_ID, run_id, timeout=1800)
            seconds = time.monotonic() - triggered
            if run['state'] != 'success':
                print(f'\nThe {DAG_ID} run failed: {stack.api.task_states(DAG_ID, run_id)}\n'
                      f'Task logs: {stack.base_url}/dags/{DAG_ID}/runs/{run_id}', file=sys.stderr)
                return 1
            swapped = stack.api.xcom(DAG_ID, run_id, 'swap')
            print(f'\nLoaded {swapped["rows_after"]} rows into {args.datasets_db}.omis_dataset '
                  f'in {seconds:.1f} s from trigger to swap ({time.monotonic() - started:.0f} s in all).')
            print(f'Airflow UI: {stack.base_url}  (local mode: no login, every visitor is an admin)')
            print(f'Datasets:   {stack.base_url}/plugin/datasets  (what each pipeline loaded, how fresh it is)')
            print(look_at_the_data(args, datasets_dsn, embedded))
            if args.exit:
                return 0
            print('Everything keeps running until you press Ctrl-C.')
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print('\nStopping.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
