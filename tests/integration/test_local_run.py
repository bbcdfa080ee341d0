"""One run in one process, through the same steps Airflow runs (dataflow.runs.local)."""

import pytest

from dataflow.errors import RunFailed
from dataflow.load import catalog
from dataflow.load.strategies import replace
from dataflow.runs import pagestore
from devstack.datahub_records import omis_record
from tests.support.omis import omis_spec, paged_last
from tests.support.expected import expected_rows, table_rows
from tests.support.postgres import count, leftover_tables
from tests.support.runs import run_locally


def test_a_local_run_loads_the_source_exactly(source, hawk_client, datasets_dsn, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(350)))
    spec = omis_spec()
    result = run_locally(spec, hawk_client, datasets_dsn, 'run-1')
    assert (result.pages, result.rows, result.published['rows_after']) == (4, 350, 350)
    assert table_rows(datasets_conn, spec) == expected_rows(spec, source.omis.records())  # every cell
    assert leftover_tables(datasets_conn) == []


def test_a_bad_record_fails_the_run_and_leaves_the_old_table(source, hawk_client, datasets_dsn, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(150)))
    spec = omis_spec()
    run_locally(spec, hawk_client, datasets_dsn, 'run-1')

    broken = paged_last(omis_record(120, version=1))
    broken['company__name'] = None
    source.omis.put(*(omis_record(i, version=1) for i in range(200)), broken)
    with pytest.raises(RunFailed) as error:
        run_locally(spec, hawk_client, datasets_dsn, 'run-2')
    assert str(error.value) == (
        f"OMISDatasetPipeline: page {source.omis.page_url(1)}: record {broken['reference']!r}: "
        'field company__name (column company_name): is null, but its column is NOT NULL'
    )
    assert count(datasets_conn, 'omis_dataset') == 150
    assert leftover_tables(datasets_conn) == []
    run_key = pagestore.run_key(spec.name, 'run-2', 0)
    assert not catalog.table_exists(datasets_conn, replace.staging_table_name('omis_dataset', run_key))
