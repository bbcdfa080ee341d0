import pytest

from dataflow import quality, tables
from dataflow.demo.omis_records import omis_record
from dataflow.errors import PipelineDefinitionError
from dataflow.pipelines import dataset_pipeline_spec
from dataflow.sync import PipelineRunError, sync
from tests.test_sync import omis_spec
from tests.test_tables import count, leftover_tables


def with_gates(spec, **gates):
    return type(spec)(**{**spec.__dict__, **gates})


def test_a_shrinking_table_is_not_swapped_in(source, hawk_client, datasets_conn):
    source.put(*(omis_record(i) for i in range(200)))
    spec = omis_spec(source)
    sync(spec, hawk_client, datasets_conn, 'run-1')
    source.remove(*(omis_record(i)['reference'] for i in range(30)))  # 170 of 200: 85%
    with pytest.raises(PipelineRunError) as error:
        sync(spec, hawk_client, datasets_conn, 'run-2')
    assert str(error.value) == (
        'OMISDatasetPipeline: the new table has 170 rows, 85% of the 200 rows in omis_dataset '
        '(the minimum is 90%); the target is unchanged. If the drop is expected, lower '
        'OMISDatasetPipeline.min_rows_ratio (or set it to None).')
    assert count(datasets_conn, 'omis_dataset') == 200 and leftover_tables(datasets_conn) == []
    assert sync(with_gates(spec, min_rows_ratio=None), hawk_client, datasets_conn, 'run-3').swap.rows_after == 170
    assert sync(with_gates(spec, min_rows_ratio=0.5), hawk_client, datasets_conn, 'run-4').swap.rows_after == 170


def test_the_first_load_has_nothing_to_compare_with(source, hawk_client, datasets_conn):
    source.put(omis_record(1))
    assert sync(omis_spec(source), hawk_client, datasets_conn, 'run-1').swap.rows_after == 1


def test_all_null_columns_warn_or_fail_as_configured(source, hawk_client, datasets_conn, caplog):
    records = [omis_record(i) for i in range(50)]
    for record in records:
        record['market__name'] = None
        record.pop('uk_region__name')
    source.put(*records)
    spec = omis_spec(source)
    staging = tables.staging_table_name(spec.table_name, 'gates')
    tables.create_table(datasets_conn, staging, spec.columns)
    from dataflow.records import RecordRenderer

    with datasets_conn.cursor() as cursor:
        tables.copy_page(cursor, staging, RecordRenderer(spec.columns), records, 'page')
    datasets_conn.commit()

    report = quality.check(datasets_conn, spec, staging)
    assert report.all_null_columns == ('uk_region', 'market')
    assert report.warnings == ('OMISDatasetPipeline: column(s) uk_region, market are NULL in all 50 rows; '
                               'has the source renamed or dropped a field?',)
    with pytest.raises(quality.QualityGateFailed, match='uk_region, market are NULL in all 50 rows.*unchanged'):
        quality.check(datasets_conn, with_gates(spec, all_null_columns='fail'), staging)
    assert quality.check(datasets_conn, with_gates(spec, all_null_columns='ignore'), staging).warnings == ()


@pytest.mark.parametrize('attribute, value, message', [
    ('min_rows_ratio', 1.5, 'must be a number from 0 to 1, or None'),
    ('min_rows_ratio', True, 'must be a number from 0 to 1, or None'),
    ('all_null_columns', 'explode', 'must be one of warn, fail, ignore'),
])
def test_gate_settings_are_validated(source, attribute, value, message):
    cls = type('OMISDatasetPipeline', (omis_spec(source).pipeline_class,), {attribute: value})
    with pytest.raises(PipelineDefinitionError, match=f'OMISDatasetPipeline.{attribute}: {message}'):
        dataset_pipeline_spec(cls)
