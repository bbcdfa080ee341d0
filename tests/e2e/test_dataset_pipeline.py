"""The OMIS pipeline end to end on the real scheduler and Celery worker (concurrency 2,
fewer slots than INGEST_TASK_CONCURRENCY + 1 tasks that want one)."""

import re

import pytest

from dataflow.definitions.discovery import discover
from devstack.datahub_records import contact_record, investment_project_record, omis_record
from tests.support.expected import expected_rows
from tests.support.e2e import (DAG_ID, INGEST_TASK_CONCURRENCY, PAGE_SIZE, expected_omis, files_containing, leftovers,
                               target_rows)

def test_runs_twice_and_the_target_equals_the_source_each_time(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(2450)))

    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success', stack.api.task_states(DAG_ID, run_id)
    assert target_rows(stack) == expected_omis(stack.source.omis.records())
    assert leftovers(stack) == ([], [])
    fetched = stack.api.xcom(DAG_ID, run_id, 'fetch')
    assert (fetched['pages'], fetched['rows']) == (25, 2450)
    ingested = [stack.api.xcom(DAG_ID, run_id, f'ingest-{i}') for i in range(INGEST_TASK_CONCURRENCY)]
    assert sum(i['pages'] for i in ingested) == 25 and sum(i['rows'] for i in ingested) == 2450
    swapped = stack.api.xcom(DAG_ID, run_id, 'swap')
    assert (swapped['rows_before'], swapped['rows_after']) == (None, 2450)

    # Between runs the source removes, changes and adds rows.
    stack.source.omis.remove(*(omis_record(i)['reference'] for i in range(0, 2450, 7)))
    stack.source.omis.put(*(omis_record(i, version=1) for i in range(3, 2450, 7)))
    stack.source.omis.put(*(omis_record(i) for i in range(5000, 5333)))
    expected = expected_omis(stack.source.omis.records())

    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success', stack.api.task_states(DAG_ID, run_id)
    assert target_rows(stack) == expected
    assert leftovers(stack) == ([], [])
    swapped = stack.api.xcom(DAG_ID, run_id, 'swap')
    assert (swapped['rows_before'], swapped['rows_after']) == (2450, len(expected))


def test_a_failed_run_leaves_the_target_and_cleans_up(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(400)))
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    before = target_rows(stack)

    stack.source.omis.put(*(omis_record(i, version=3) for i in range(400)))
    stack.source.omis.fail_next(2, *[500] * 20)  # more than every retry of every try
    run_id, run = stack.run_dag(DAG_ID)
    states = stack.api.task_states(DAG_ID, run_id)
    assert run['state'] == 'failed'
    assert states['fetch'] == 'failed' and states['swap'] == 'upstream_failed'
    assert states['cleanup'] == 'failed'  # it cleaned up, then failed the run: nothing was swapped
    assert target_rows(stack) == before
    assert leftovers(stack) == ([], [])


def test_task_logs_show_progress(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(3 * PAGE_SIZE)))
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    fetch_log = stack.api.task_log(DAG_ID, run_id, 'fetch')
    assert 'OMISDatasetPipeline: page 2: 100 rows' in fetch_log
    assert re.search(r'fetched 3 pages, 300 rows in [\d.]+ s \([\d,]+/s\)', fetch_log), fetch_log[-2000:]
    ingest_logs = ' '.join(stack.api.task_log(DAG_ID, run_id, f'ingest-{i}') for i in range(4))
    assert re.search(r'loaded page [\d-]+ \([1-3]00 rows\); \d+ rows by this task, [\d,]+/s', ingest_logs)
    swap_log = stack.api.task_log(DAG_ID, run_id, 'swap')
    assert 'swapped in omis_dataset: no table -> 300 rows' in swap_log


def test_no_log_holds_the_hawk_key(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(250)))
    stack.source.omis.fail_next(1, 503)  # a retry, so retry logging is in the logs too
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    assert 'retrying' in stack.api.task_log(DAG_ID, run_id, 'fetch')
    leaks, read = files_containing(stack.airflow.home, stack.hawk_key)
    assert read > 10 and leaks == []


@pytest.mark.parametrize('dag_id, dataset, make', [
    ('ContactsDatasetPipeline', 'contacts', contact_record),
    ('InvestmentProjectsDatasetPipeline', 'investment_projects', investment_project_record),
])
def test_the_other_shipped_pipelines_load_data_hubs_shapes_exactly(fresh_target, dag_id, dataset, make):
    stack = fresh_target
    getattr(stack.source, dataset).put(*(make(i) for i in range(3 * PAGE_SIZE + 17)))
    run_id, run = stack.run_dag(dag_id)
    assert run['state'] == 'success', stack.api.task_states(dag_id, run_id)
    spec = discover().specs[dag_id]
    assert target_rows(stack, spec) == expected_rows(spec, getattr(stack.source, dataset).records())
    assert leftovers(stack) == ([], [])


def test_the_worker_loaded_the_engine_before_forking_its_pool(stack):
    """LATENCY_SETTINGS' celery_config: the worker process itself, which runs no task, has
    pglast's C parser mapped, so every task forked from it starts with the engine loaded."""
    with open(f'/proc/{stack.airflow.processes["worker"].pid}/maps') as maps:
        assert 'pglast/parser' in maps.read()
