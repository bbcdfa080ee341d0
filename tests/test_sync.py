import datetime

import pytest

from dataflow import tables
from dataflow.demo.omis_records import omis_record
from dataflow.meta.datasets_flow import OMISDatasetPipeline
from dataflow.pipelines import dataset_pipeline_spec
from dataflow.sync import PipelineRunError, sync
from tests.test_tables import count, leftover_tables


def omis_spec(source):
    cls = type('OMISDatasetPipeline', (OMISDatasetPipeline,), {'source_url': source.dataset_url})
    return dataset_pipeline_spec(cls)


def test_sync_loads_the_source_exactly(source, hawk_client, datasets_conn):
    source.put(*(omis_record(i) for i in range(350)))
    spec = omis_spec(source)
    result = sync(spec, hawk_client, datasets_conn, 'run-1')
    assert (result.pages, result.rows, result.swap.rows_after) == (4, 350, 350)
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT omis_order_reference, company_name, services, subtotal, completion_date '
                       'FROM omis_dataset ORDER BY 1')
        loaded = cursor.fetchall()
    expected = sorted(
        (r['reference'], r['company__name'], r['services'], r['subtotal_cost'],
         None if r['completed_on'] is None else datetime.datetime.fromisoformat(r['completed_on']))
        for r in source.records()
    )
    assert loaded == expected
    assert leftover_tables(datasets_conn) == []


def test_a_bad_record_fails_the_run_and_leaves_the_old_table(source, hawk_client, datasets_conn):
    source.put(*(omis_record(i) for i in range(150)))
    spec = omis_spec(source)
    sync(spec, hawk_client, datasets_conn, 'run-1')

    broken = omis_record(120, version=1)
    broken['company__name'] = None
    source.put(*(omis_record(i, version=1) for i in range(200)), broken)
    with pytest.raises(PipelineRunError) as error:
        sync(spec, hawk_client, datasets_conn, 'run-2')
    assert str(error.value) == (
        f"OMISDatasetPipeline: page {source.dataset_url}?page=1: record {broken['reference']!r}: "
        'field company__name (column company_name): is null, but its column is NOT NULL'
    )
    assert count(datasets_conn, 'omis_dataset') == 150
    assert leftover_tables(datasets_conn) == []
    assert not tables.table_exists(datasets_conn, tables.staging_table_name('omis_dataset', 'run-2'))
