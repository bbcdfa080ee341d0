"""The demo: serve generated OMIS records from the Hawk-signed demo source, load them
with the OMIS pipeline into a `dataflow_demo` database, and print what was loaded."""

import argparse
import logging
import secrets

import psycopg2

from dataflow.demo import services
from dataflow.demo.omis_records import omis_record
from dataflow.demo.source_api import DemoSource
from dataflow.hooks.hawk import HawkClient
from dataflow.meta.datasets_flow import OMISDatasetPipeline
from dataflow.pipelines import dataset_pipeline_spec
from dataflow.sync import sync

DEMO_DATABASE = 'dataflow_demo'


def ensure_database(admin_dsn, name):
    conn = psycopg2.connect(admin_dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute('SELECT 1 FROM pg_database WHERE datname = %s', (name,))
            exists = cursor.fetchone() is not None
    finally:
        conn.close()
    return services.database_dsn(admin_dsn, name) if exists else services.create_database(admin_dsn, name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--rows', type=int, default=5000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(message)s')

    hawk_id, hawk_key = 'demo', secrets.token_urlsafe(24)
    with services.postgres_server() as admin_dsn, DemoSource(hawk_id, hawk_key) as source:
        source.put(*(omis_record(i) for i in range(args.rows)))
        spec = dataset_pipeline_spec(
            type('OMISDatasetPipeline', (OMISDatasetPipeline,), {'source_url': source.dataset_url})
        )
        dsn = ensure_database(admin_dsn, DEMO_DATABASE)
        conn = psycopg2.connect(dsn)
        try:
            result = sync(spec, HawkClient(hawk_id, hawk_key), conn, run_id=secrets.token_hex(8))
        finally:
            conn.close()
    print(f'\nLoaded {result.swap.rows_after} rows into {DEMO_DATABASE}.{spec.table_name} '
          f'({result.pages} pages, {result.rows / result.seconds:.0f} rows/s).')


if __name__ == '__main__':
    main()
