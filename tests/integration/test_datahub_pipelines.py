"""The shipped pipelines against a source that sends exactly what Data Hub's dataset endpoints
send (devstack: comma-joined aggregates, Z timestamps with and without fractions, "" as well
as null, unmapped fields, cursor pagination), loaded by `dataflow run` from the default
source connection (HAWK_ID, HAWK_KEY, DATAHUB_BASE_URL) and compared cell by cell with the
source's JSON. Then schema drift and value conversions, through the same engine."""

import os
import re
import subprocess
import sys

import pytest

from dataflow.definitions.conversions import split
from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.errors import RunFailed, SchemaDrift
from dataflow.pipelines.datasets import (ContactsDatasetPipeline, InvestmentProjectsDatasetPipeline,
                                         OMISDatasetPipeline)
from devstack.datahub_records import contact_record, investment_project_record, omis_record
from devstack.source_api import RENAME
from tests.support.expected import expected_rows, table_rows
from tests.support.postgres import leftover_tables
from tests.support.runs import run_locally
from tests.support.sources import TEST_HAWK_ID, TEST_HAWK_KEY

SHIPPED = [(OMISDatasetPipeline, 'omis', omis_record), (ContactsDatasetPipeline, 'contacts', contact_record),
           (InvestmentProjectsDatasetPipeline, 'investment_projects', investment_project_record)]


@pytest.mark.parametrize('cls, dataset, make', SHIPPED, ids=[c.__name__ for c, _, _ in SHIPPED])
def test_dataflow_run_loads_data_hubs_shapes_exactly(cls, dataset, make, source, datasets_dsn, datasets_conn):
    getattr(source, dataset).put(*(make(i) for i in range(260)))  # 3 pages of 100
    env = {**os.environ, 'HAWK_ID': TEST_HAWK_ID, 'HAWK_KEY': TEST_HAWK_KEY, 'DATAHUB_BASE_URL': source.url}
    env.pop('AIRFLOW_CONN_DATAHUB', None)
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'dataflow'), 'run', cls.__name__,
                             '--dsn', datasets_dsn], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'{cls.__name__}: loaded 260 rows in 3 pages' in result.stdout
    spec = dataset_pipeline_spec(cls)
    assert table_rows(datasets_conn, spec) == expected_rows(spec, getattr(source, dataset).records())


def omis_run(source, hawk_client, datasets_dsn, run_id, **attributes):
    cls = type('OMISDatasetPipeline', (OMISDatasetPipeline,), attributes)
    return run_locally(dataset_pipeline_spec(cls), hawk_client, datasets_dsn, run_id)


@pytest.fixture
def loaded(source, hawk_client, datasets_dsn, datasets_conn):
    """An OMIS table loaded once (the load history then knows the source's keys); the
    source then holds other records, 3 pages of them."""
    source.omis.put(*(omis_record(i) for i in range(250)))
    omis_run(source, hawk_client, datasets_dsn, 'first')
    source.omis.reset()
    source.omis.put(*(omis_record(i) for i in range(1000, 1270)))
    return table_rows(datasets_conn, dataset_pipeline_spec(OMISDatasetPipeline))


def test_a_field_renamed_on_one_page_fails_before_the_swap(loaded, source, hawk_client, datasets_dsn, datasets_conn):
    source.omis.fail_next(1, (RENAME, 'subtotal_cost', 'net_price'))
    with pytest.raises(RunFailed) as error:
        omis_run(source, hawk_client, datasets_dsn, 'renamed-on-page-1')
    assert isinstance(error.value.cause, SchemaDrift)
    assert str(error.value).startswith(
        f'OMISDatasetPipeline: page {source.omis.page_url(1)}: the source sent no field subtotal_cost (column '
        'net_price) in any record; keys that appeared there: net_price; did you mean net_price? Nothing was swapped.')
    assert table_rows(datasets_conn, dataset_pipeline_spec(OMISDatasetPipeline)) == loaded
    assert leftover_tables(datasets_conn) == []


def test_a_field_renamed_on_every_page_fails_on_the_first(loaded, source, hawk_client, datasets_dsn, datasets_conn):
    records = source.omis.records()
    source.omis.reset()
    source.omis.put(*({'price_pence' if k == 'subtotal_cost' else k: v for k, v in r.items()} for r in records))
    with pytest.raises(RunFailed, match=re.escape(f'page {source.omis.url}: the source sent no field subtotal_cost '
                                                  '(column net_price) in any record; keys that appeared there: '
                                                  'price_pence; did you mean price_pence?')):
        omis_run(source, hawk_client, datasets_dsn, 'renamed-everywhere')
    assert table_rows(datasets_conn, dataset_pipeline_spec(OMISDatasetPipeline)) == loaded


def test_allowed_missing_fields_load_as_null_and_are_reported(loaded, source, hawk_client, datasets_dsn,
                                                               datasets_conn):
    source.omis.fail_next(2, (RENAME, 'subtotal_cost', 'net_price'))
    result = omis_run(source, hawk_client, datasets_dsn, 'tolerated', allow_missing_fields=['subtotal_cost'])
    assert result.published['missing_fields'] == ['subtotal_cost']
    assert result.published['new_fields'] == ['net_price']
    assert any('sent no subtotal_cost in some pages; loaded as NULL there' in w for w in result.published['warnings'])
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FILTER (WHERE net_price IS NULL), count(*) FROM omis_dataset')
        assert cursor.fetchone() == (70, 270)  # the last page's 70 records
        cursor.execute('SELECT missing_fields, new_fields FROM dataflow.load_history ORDER BY finished_at DESC LIMIT 1')
        assert cursor.fetchone() == (['subtotal_cost'], ['net_price'])
    datasets_conn.commit()


def test_new_unmapped_fields_are_reported_and_never_fail_a_run(loaded, source, hawk_client, datasets_dsn,
                                                              datasets_conn):
    records = source.omis.records()
    source.omis.reset()
    source.omis.put(*({**r, 'quote__accepted_on': None, 'brand_new': 1} for r in records))
    result = omis_run(source, hawk_client, datasets_dsn, 'new-fields')
    assert result.published['rows_after'] == 270
    assert result.published['new_fields'] == ['brand_new', 'quote__accepted_on']
    assert 'brand_new' in result.published['unmapped_fields'] and 'id' in result.published['unmapped_fields']
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT new_fields, unmapped_fields FROM dataflow.load_history '
                       'ORDER BY finished_at DESC LIMIT 1')
        new_fields, unmapped = cursor.fetchone()
    datasets_conn.commit()
    assert new_fields == ['brand_new', 'quote__accepted_on'] and unmapped == result.published['unmapped_fields']


def test_a_comma_joined_aggregate_can_be_split_into_an_array(source, hawk_client, datasets_dsn, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(120)))
    cls = type('OMISServicesDatasetPipeline', (), {
        'table_name': 'omis_services', 'source_path': '/v4/dataset/omis-dataset',
        'start_date': OMISDatasetPipeline.start_date,
        'field_mapping': [('reference', 'reference', 'text PRIMARY KEY'),
                          ('services', 'service_names', 'text[]', split(', '))]})
    spec = dataset_pipeline_spec(cls)
    run_locally(spec, hawk_client, datasets_dsn, 'split')
    assert table_rows(datasets_conn, spec) == expected_rows(spec, source.omis.records())
    with datasets_conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM omis_services WHERE 'Trade visit' = ANY(service_names)")
        assert cursor.fetchone()[0] == sum('Trade visit' in r['services'].split(', ') for r in source.omis.records())
    datasets_conn.commit()
