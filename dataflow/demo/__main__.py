"""The demo: the OMIS pipeline end to end on a local Airflow 3 stack.

Starts (or reuses) PostgreSQL and Redis, serves generated OMIS records from the
Hawk-signed demo source, starts the Airflow api-server, scheduler, dag-processor and a
Celery worker, triggers the OMISDatasetPipeline DAG, waits for it, and prints the rows
loaded and how to open the UI. The stack keeps running until Ctrl-C (or --exit).
"""

import argparse
import logging
import os
import secrets
import signal
import sys
import time

import psycopg2

from dataflow import constants
from dataflow.demo import services
from dataflow.demo.airflow_stack import AirflowStack
from dataflow.demo.omis_records import omis_record
from dataflow.demo.source_api import DemoSource

DAG_ID = 'OMISDatasetPipeline'
log = logging.getLogger('dataflow.demo')


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=5000, help='OMIS records the demo source serves')
    parser.add_argument('--port', type=int, default=8080, help='Airflow UI and API port (another if taken)')
    parser.add_argument('--source-port', type=int, default=8100, help='demo source port (another if taken)')
    parser.add_argument('--datasets-db', default='dataflow_demo')
    parser.add_argument('--metadata-db', default='dataflow_demo_airflow', help='recreated on every demo run')
    parser.add_argument('--state-dir', default=constants.DATAFLOW_STATE_DIR)
    parser.add_argument('--exit', action='store_true', help='stop everything once the run has finished')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', datefmt='%H:%M:%S')
    for noisy in ('dataflow.demo.source_api', 'urllib3', 'pgserver'):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    hawk_id, hawk_key = 'demo', secrets.token_urlsafe(24)
    started = time.monotonic()
    with services.postgres_server(state_dir=args.state_dir) as admin_dsn, services.redis_server() as redis_url, \
            DemoSource(hawk_id, hawk_key, port=port_or_free(args.source_port)) as source:
        source.put(*(omis_record(i) for i in range(args.rows)))
        log.info('Demo source serving %d OMIS records at %s', args.rows, source.dataset_url)
        metadata_dsn = ensure_database(admin_dsn, args.metadata_db, fresh=True)
        datasets_dsn = ensure_database(admin_dsn, args.datasets_db)
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
        log.info('Starting Airflow (api-server, scheduler, dag-processor, Celery worker); logs in %s',
                 os.path.join(stack.home, 'logs'))
        with stack:
            stack.api.wait_dag(DAG_ID)
            run_id = f'demo-{time.strftime("%Y%m%dT%H%M%S")}'
            triggered = time.monotonic()
            stack.api.trigger(DAG_ID, run_id=run_id)
            log.info('Triggered %s run %s', DAG_ID, run_id)
            run = stack.api.wait_run(DAG_ID, run_id, timeout=1800)
            seconds = time.monotonic() - triggered
            if run['state'] != 'success':
                print(f'\nThe {DAG_ID} run failed: {stack.api.task_states(DAG_ID, run_id)}\n'
                      f'Task logs: {stack.base_url}/dags/{DAG_ID}/runs/{run_id}', file=sys.stderr)
                return 1
            swapped = stack.api.xcom(DAG_ID, run_id, 'swap')
            print(f'\nLoaded {swapped["rows_after"]} rows into {args.datasets_db}.omis_dataset '
                  f'in {seconds:.1f} s from trigger to swap ({time.monotonic() - started:.0f} s in all).')
            print(f'Airflow UI: {stack.base_url}  (local mode: no login, every visitor is an admin)')
            print(f'The data:   psql "{services.url_for(datasets_dsn)}" -c "SELECT count(*) FROM omis_dataset"')
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
