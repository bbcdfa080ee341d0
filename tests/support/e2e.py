"""What the end-to-end tests share: the shape of the stack they run on, the OMIS table as
the source should make it, and what a finished run must not leave behind."""

import datetime
import os

from dataflow.runs.pagestore import PAGE_KEY_PREFIX

E2E_HAWK_ID = 'e2e-hawk-id'
INGEST_TASK_CONCURRENCY = 4
PAGE_SIZE = 100

DAG_ID = 'OMISDatasetPipeline'
COLUMNS = ('omis_order_reference', 'company_name', 'dit_team', 'subtotal', 'uk_region', 'market', 'sector',
           'services', 'order_status', 'created_date', 'completion_date', 'delivery_date',
           'payment_received_date', 'cancelled_date', 'cancellation_reason')


def _timestamp(value):
    return None if value is None else datetime.datetime.fromisoformat(value)


def expected_row(record):
    return (
        record['reference'], record['company__name'], record['dit_team__name'], record['subtotal_cost'],
        record['uk_region__name'], record['market__name'], record['sector__segment'], record['services'],
        record['status'], _timestamp(record['created_on']), _timestamp(record['completed_on']),
        datetime.date.fromisoformat(record['delivery_date']), _timestamp(record['paid_on']),
        _timestamp(record['cancelled_on']), record['cancellation_reason__name'],
    )


def target_rows(stack):
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute(f'SELECT {", ".join(COLUMNS)} FROM omis_dataset ORDER BY 1')
        rows = cursor.fetchall()
    conn.close()
    return rows


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
