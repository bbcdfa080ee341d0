"""Faults, end to end through the scheduler and Celery worker, against a source that
misbehaves on demand. Every case checks that the target is wholly the old table or
wholly the new one, that no page Variable or staging table is left, and that a failure
names the pipeline and the page (and the record and field, where they apply)."""

import signal
import time

import psutil
import psycopg2.extensions
import pytest

from devstack.datahub_records import omis_record
from devstack.source_api import FORGED, MALFORMED_JSON, RENAME, SLOW, UNSIGNED
from tests.support.e2e import DAG_ID, blocked_on_lock, expected_omis, leftovers, staging_table_of, target_rows
from tests.support.omis import paged_last

OLD, NEW = range(0, 250), range(1000, 1300)   # 3 pages, then 3 pages of other records


def load_old_table(stack):
    stack.source.omis.put(*(omis_record(i) for i in OLD))
    _, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    stack.source.reset()
    stack.source.omis.put(*(omis_record(i) for i in NEW))
    return target_rows(stack)


def new_rows(stack):
    return expected_omis(stack.source.omis.records())


def assert_failed_and_untouched(stack, run, run_id, old, task_id, *message_parts):
    states = stack.api.task_states(DAG_ID, run_id)
    assert run['state'] == 'failed', states
    assert target_rows(stack) == old
    assert leftovers(stack) == ([], [])
    logged = stack.api.task_log(DAG_ID, run_id, task_id)
    for part in ('OMISDatasetPipeline: ', *message_parts):
        assert part in logged, (part, logged[-3000:])


def test_a_page_that_answers_500_twice_then_200_loads_exactly(fresh_target):
    stack = fresh_target
    load_old_table(stack)
    stack.source.omis.fail_next(1, 500, 500)
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    assert target_rows(stack) == new_rows(stack) and leftovers(stack) == ([], [])
    assert stack.source.omis.requests[1] == 3


@pytest.mark.parametrize('fault, message', [
    (500, 'gave up after 3 attempts: HTTP 500'),
    (UNSIGNED, 'response is not signed: no Server-Authorization header'),
    (FORGED, 'response signature rejected (MisComputedContentHash)'),
    (MALFORMED_JSON, 'response is not valid JSON'),
    ((SLOW, 3), 'gave up after 3 attempts: timed out (connect 10.0 s, read 2.0 s)'),
], ids=['500-until-retries-are-spent', 'unsigned', 'forged-signature', 'malformed-json', 'slower-than-timeout'])
def test_a_misbehaving_page_fails_the_run_and_leaves_the_old_table(fresh_target, fault, message):
    stack = fresh_target
    old = load_old_table(stack)
    stack.source.omis.fail_next(1, *[fault] * 40)  # more than every attempt of every try
    run_id, run = stack.run_dag(DAG_ID, timeout=600)
    page_url = f'{stack.source.omis.page_url(1)}'
    assert_failed_and_untouched(stack, run, run_id, old, 'fetch', f'page {page_url}: {message}')


def test_a_record_missing_a_not_null_field_fails_naming_page_record_and_field(fresh_target):
    stack = fresh_target
    old = load_old_table(stack)
    broken = paged_last(omis_record(1150))
    del broken['company__name']
    stack.source.omis.put(broken)
    run_id, run = stack.run_dag(DAG_ID)
    assert_failed_and_untouched(
        stack, run, run_id, old, 'fetch',
        f"page {stack.source.omis.page_url(2)}: record {broken['reference']!r}: field company__name "
        '(column company_name): is missing, but its column is NOT NULL')
    [fetch] = [ti for ti in stack.api.task_instances(DAG_ID, run_id) if ti['task_id'] == 'fetch']
    assert fetch['try_number'] == 1  # bad data is not retried


# -- killed mid-page -------------------------------------------------------------------------

def process_with_connection(stack, client_address, client_port):
    """The process holding the connection from (address, port) to the datasets database's
    server: both ends must match, as another process may use the same port number elsewhere."""
    server_port = int(psycopg2.extensions.parse_dsn(stack.datasets_dsn).get('port', 5432))
    for connection in psutil.net_connections(kind='tcp'):
        if (connection.pid and connection.laddr and connection.raddr
                and (connection.laddr.ip, connection.laddr.port) == (client_address, client_port)
                and connection.raddr.port == server_port):
            return psutil.Process(connection.pid)
    pytest.fail(f'no process has the connection from {client_address}:{client_port} to port {server_port}')


@pytest.mark.parametrize('how', ['sigkill-the-task-process', 'pg-terminate-backend'])
def test_an_ingest_task_losing_its_page_mid_copy_recovers_and_every_row_loads_once(fresh_target, how):
    """Killed, the task is retried; its session terminated, it reconnects (in the same try).
    Either way the page it was copying rolled back and is loaded again, once."""
    stack = fresh_target
    load_old_table(stack)
    run_id = f'test-{how}-{int(time.time())}'
    stack.api.trigger(DAG_ID, run_id=run_id)
    staging = staging_table_of(stack, DAG_ID, run_id)
    blocker = stack.connect()
    with blocker.cursor() as cursor:  # every COPY into the staging table now waits mid-page
        cursor.execute(f'LOCK TABLE public."{staging}" IN ACCESS EXCLUSIVE MODE')
    backend, client_address, client_port = blocked_on_lock(stack, 'COPY %', 'no ingest task reached its COPY')
    if how == 'sigkill-the-task-process':
        process_with_connection(stack, client_address, client_port).send_signal(signal.SIGKILL)
    else:
        terminator = stack.connect()
        terminator.autocommit = True
        with terminator.cursor() as cursor:
            cursor.execute('SELECT pg_terminate_backend(%s)', (backend,))
        terminator.close()
    time.sleep(1)
    blocker.rollback()  # the lock goes; the other tasks, and the retry, carry on
    blocker.close()

    run = stack.api.wait_run(DAG_ID, run_id, timeout=300)
    instances = stack.api.task_instances(DAG_ID, run_id)
    assert run['state'] == 'success', {ti['task_id']: ti['state'] for ti in instances}
    ingest = [ti for ti in instances if ti['task_id'].startswith('ingest-')]
    if how == 'sigkill-the-task-process':
        assert any(ti['try_number'] > 1 for ti in ingest), ingest
    else:
        logs = [stack.api.task_log(DAG_ID, run_id, ti['task_id']) for ti in ingest]
        assert any('lost the datasets database' in text and 'connected to the datasets database again' in text
                   for text in logs), logs
    assert target_rows(stack) == new_rows(stack)  # every row, once (and the primary key forbids twice)
    assert leftovers(stack) == ([], [])


def test_two_runs_triggered_at_once_do_not_interleave(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in NEW))
    first, second = f'at-once-1-{int(time.time())}', f'at-once-2-{int(time.time())}'
    stack.api.trigger(DAG_ID, run_id=first)
    stack.api.trigger(DAG_ID, run_id=second)
    runs = [stack.api.wait_run(DAG_ID, run_id, timeout=300) for run_id in (first, second)]
    assert [r['state'] for r in runs] == ['success', 'success']
    assert runs[0]['end_date'] <= runs[1]['start_date'], runs
    assert target_rows(stack) == new_rows(stack) and leftovers(stack) == ([], [])


# -- schema drift ------------------------------------------------------------------------------

def test_a_field_renamed_on_one_page_fails_the_run_before_the_swap(fresh_target):
    stack = fresh_target
    old = load_old_table(stack)
    stack.source.omis.fail_next(1, (RENAME, 'subtotal_cost', 'net_price'))
    run_id, run = stack.run_dag(DAG_ID)
    assert_failed_and_untouched(
        stack, run, run_id, old, 'fetch',
        f'page {stack.source.omis.page_url(1)}: the source sent no field subtotal_cost (column net_price) in any '
        'record; keys that appeared there: net_price; did you mean net_price? Nothing was swapped.')
    [fetch] = [ti for ti in stack.api.task_instances(DAG_ID, run_id) if ti['task_id'] == 'fetch']
    assert fetch['try_number'] == 1  # drift is not retried


def test_a_field_renamed_on_every_page_fails_on_the_first(fresh_target):
    stack = fresh_target
    old = load_old_table(stack)
    records = stack.source.omis.records()
    stack.source.omis.reset()
    stack.source.omis.put(*({'subtotal_pence' if k == 'subtotal_cost' else k: v for k, v in r.items()}
                            for r in records))
    run_id, run = stack.run_dag(DAG_ID)
    assert_failed_and_untouched(
        stack, run, run_id, old, 'fetch',
        f'page {stack.source.omis.url}: the source sent no field subtotal_cost (column net_price) in any record; '
        'keys that appeared there: subtotal_pence; did you mean subtotal_pence?')


def test_with_the_opt_out_a_missing_field_loads_as_null_and_is_reported(fresh_target):
    stack = fresh_target
    dag_id = 'TolerantOMISDatasetPipeline'  # allow_missing_fields = ['subtotal_cost'] (tests/support)
    stack.source.omis.put(*(omis_record(i) for i in NEW))
    stack.source.omis.fail_next(2, (RENAME, 'subtotal_cost', 'net_price'))
    run_id, run = stack.run_dag(dag_id)
    assert run['state'] == 'success', stack.api.task_states(dag_id, run_id)
    swapped = stack.api.xcom(dag_id, run_id, 'swap')
    assert (swapped['rows_after'], swapped['missing_fields']) == (300, ['subtotal_cost'])
    assert any('sent no subtotal_cost in some pages' in warning for warning in swapped['warnings'])
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM omis_tolerant WHERE net_price IS NULL')
        assert cursor.fetchone() == (100,)  # the third page's
        cursor.execute("SELECT missing_fields FROM dataflow.load_history WHERE table_name = 'omis_tolerant'")
        assert cursor.fetchall() == [(['subtotal_cost'],)]
    conn.close()
    assert 'sent no subtotal_cost in some pages' in stack.api.task_log(dag_id, run_id, 'swap')


def test_new_unmapped_fields_are_reported_and_the_run_succeeds(fresh_target):
    stack = fresh_target
    load_old_table(stack)
    records = stack.source.omis.records()
    stack.source.omis.reset()
    stack.source.omis.put(*({**r, 'invoice__vat_cost': 0} for r in records))
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    assert target_rows(stack) == new_rows(stack) and leftovers(stack) == ([], [])
    swapped = stack.api.xcom(DAG_ID, run_id, 'swap')
    assert swapped['new_fields'] == ['invoice__vat_cost'] and 'invoice__vat_cost' in swapped['unmapped_fields']
    assert 'the source sends fields no column maps: invoice__vat_cost' in str(
        stack.api.task_log(DAG_ID, run_id, 'swap'))
