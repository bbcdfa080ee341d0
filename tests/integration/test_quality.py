import pytest

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.errors import DefinitionError, QualityGateFailed, RunFailed
from dataflow.load import copy as copy_format
from dataflow.load import ddl, quality
from dataflow.load.copy import RecordRenderer
from dataflow.load.strategies import replace
from devstack.datahub_records import omis_record
from tests.support.omis import omis_spec
from tests.support.postgres import count, leftover_tables
from tests.support.runs import run_locally


def with_gates(spec, **gates):
    return type(spec)(**{**spec.__dict__, **gates})


def test_a_shrinking_table_is_not_swapped_in(source, hawk_client, datasets_dsn, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(200)))
    spec = omis_spec()
    run_locally(spec, hawk_client, datasets_dsn, 'run-1')
    source.omis.remove(*(omis_record(i)['reference'] for i in range(30)))  # 170 of 200: 85%
    with pytest.raises(RunFailed) as error:
        run_locally(spec, hawk_client, datasets_dsn, 'run-2')
    assert str(error.value) == (
        'OMISDatasetPipeline: the new table has 170 rows, 85% of the 200 rows in omis_dataset '
        '(the minimum is 90%); the target is unchanged. If the drop is expected, lower '
        'OMISDatasetPipeline.min_rows_ratio (or set it to None).')
    assert count(datasets_conn, 'omis_dataset') == 200 and leftover_tables(datasets_conn) == []
    datasets_conn.commit()  # a reader's transaction ended: the next swap need not wait for it
    assert run_locally(with_gates(spec, min_rows_ratio=None), hawk_client, datasets_dsn,
                       'run-3').published['rows_after'] == 170
    assert run_locally(with_gates(spec, min_rows_ratio=0.5), hawk_client, datasets_dsn,
                       'run-4').published['rows_after'] == 170


def test_the_first_load_has_nothing_to_compare_with(source, hawk_client, datasets_dsn):
    source.omis.put(omis_record(1))
    assert run_locally(omis_spec(), hawk_client, datasets_dsn, 'run-1').published['rows_after'] == 1


def test_all_null_columns_warn_or_fail_as_configured(source, hawk_client, datasets_conn, caplog):
    records = [omis_record(i) for i in range(50)]
    for record in records:
        record['primary_market__name'] = None
        record['uk_region__name'] = None
    source.omis.put(*records)
    spec = omis_spec()
    staging = replace.staging_table_name(spec.table_name, 'gates')
    ddl.create_table(datasets_conn, staging, spec.columns)
    with datasets_conn.cursor() as cursor:
        copy_format.copy_page(cursor, staging, RecordRenderer(spec.columns), records, 'page')
    datasets_conn.commit()

    report = quality.check(datasets_conn, spec, staging)
    assert report.all_null_columns == ('market', 'uk_region')
    assert report.warnings == ('OMISDatasetPipeline: column(s) market, uk_region are NULL in all 50 rows; '
                               'has the source renamed or dropped a field?',)
    with pytest.raises(QualityGateFailed, match='market, uk_region are NULL in all 50 rows.*unchanged'):
        quality.check(datasets_conn, with_gates(spec, all_null_columns='fail'), staging)
    assert quality.check(datasets_conn, with_gates(spec, all_null_columns='ignore'), staging).warnings == ()


@pytest.mark.parametrize('attribute, value, message', [
    ('min_rows_ratio', 1.5, 'must be a number from 0 to 1, or None'),
    ('min_rows_ratio', True, 'must be a number from 0 to 1, or None'),
    ('all_null_columns', 'explode', 'must be one of warn, fail, ignore'),
])
def test_gate_settings_are_validated(source, attribute, value, message):
    cls = type('OMISDatasetPipeline', (omis_spec().pipeline_class,), {attribute: value})
    with pytest.raises(DefinitionError, match=f'OMISDatasetPipeline.{attribute}: {message}'):
        dataset_pipeline_spec(cls)
