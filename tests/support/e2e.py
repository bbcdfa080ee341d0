"""What the end-to-end tests share: the shape of the stack they run on, the OMIS table as
the source should make it, and what a finished run must not leave behind."""

import os

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.pipelines.datasets import OMISDatasetPipeline
from dataflow.runs.pagestore import PAGE_KEY_PREFIX
from tests.support.expected import expected_rows, table_rows

E2E_HAWK_ID = 'e2e-hawk-id'
INGEST_TASK_CONCURRENCY = 4
PAGE_SIZE = 100

DAG_ID = 'OMISDatasetPipeline'
OMIS = dataset_pipeline_spec(OMISDatasetPipeline)


def expected_omis(records):
    """The OMIS table the source's records must make, cell for cell."""
    return expected_rows(OMIS, records)


def target_rows(stack, spec=OMIS):
    """The rows of a dataset table of the stack, ordered as expected_rows orders them."""
    conn = stack.connect()
    try:
        return table_rows(conn, spec)
    finally:
        conn.close()


def leftovers(stack):
    """Page Variables and staging tables that a finished run must not leave behind."""
    variables = [v['key'] for v in stack.api.variables() if v['key'].startswith(PAGE_KEY_PREFIX)]
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relname LIKE '\\_df\\_%' AND relkind = 'r'")
        tables = [r[0] for r in cursor.fetchall()]
    conn.close()
    return variables, tables


def files_containing(directory, *secrets_):
    """Files under `directory` holding any of `secrets_`, and how many files were read."""
    found, read = [], 0
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, 'rb') as handle:
                    content = handle.read()
            except OSError:
                continue
            read += 1
            found += [f'{path}: {secret[:4]}…' for secret in secrets_ if secret.encode() in content]
    return found, read
