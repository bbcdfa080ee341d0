"""Source connections on the real stack: two pipelines read two sources with Hawk keys of
their own, from connections Airflow holds (created through its REST API, so read when the
tasks run); with the keys swapped, each fails with a 401 naming its connection, and no key
is in any log."""

import json
import re
import secrets

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.pipelines.datasets import ContactsDatasetPipeline
from devstack.datahub_records import contact_record
from devstack.source_api import DemoSource
from tests.support.e2e import PAGE_SIZE, files_containing, leftovers, target_rows
from tests.support.expected import expected_rows

PIPELINES = {'FirstSourceContactsDatasetPipeline': ('first_source', 'contacts_first'),
             'SecondSourceContactsDatasetPipeline': ('second_source', 'contacts_second')}


def connect(stack, conn_id, demo, key):
    stack.api.set_connection(conn_id, host=demo.url, login=demo.credentials['id'], password=key,
                             extra=json.dumps({'auth': 'hawk', 'algorithm': 'sha256'}))


def test_two_sources_with_their_own_keys_run_side_by_side_and_swapped_keys_fail_by_name(fresh_target):
    stack = fresh_target
    keys = [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
    with DemoSource('first-id', keys[0], page_size=PAGE_SIZE) as first, \
            DemoSource('second-id', keys[1], page_size=PAGE_SIZE) as second:
        demos = {'first_source': first, 'second_source': second}
        first.contacts.put(*(contact_record(i) for i in range(150)))
        second.contacts.put(*(contact_record(i, seed=2) for i in range(230)))
        for conn_id, demo in demos.items():
            connect(stack, conn_id, demo, demo.credentials['key'])
        for dag_id, (conn_id, table) in PIPELINES.items():
            run_id, run = stack.run_dag(dag_id)
            assert run['state'] == 'success', stack.api.task_states(dag_id, run_id)
            spec = dataset_pipeline_spec(type(dag_id, (ContactsDatasetPipeline,), {'table_name': table}))
            assert target_rows(stack, spec) == expected_rows(spec, demos[conn_id].contacts.records())

        # Each connection now holds the other source's key: both sources refuse.
        connect(stack, 'first_source', first, keys[1])
        connect(stack, 'second_source', second, keys[0])
        for dag_id, (conn_id, _) in PIPELINES.items():
            run_id, run = stack.run_dag(dag_id)
            assert run['state'] == 'failed'
            logged = stack.api.task_log(dag_id, run_id, 'fetch')
            assert re.search(rf"{dag_id}: page {re.escape(demos[conn_id].contacts.url)}: HTTP 401: connection "
                             rf"'{conn_id}' was refused: check its credentials", logged), logged[-3000:]
    assert leftovers(stack) == ([], [])
    leaks, read = files_containing(stack.airflow.home, *keys)
    assert read > 10 and leaks == []
