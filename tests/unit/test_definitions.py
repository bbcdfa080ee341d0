import datetime
import sys
import textwrap
import uuid

import pytest

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.definitions.discovery import discover
from dataflow.definitions.conversions import split
from dataflow.errors import DefinitionError


def pipeline(**overrides):
    attributes = {
        'table_name': 'orders',
        'source_path': '/v4/dataset/orders',
        'target_db': 'datasets_db',
        'start_date': datetime.datetime(2020, 1, 1),
        'schedule_interval': '@daily',
        'field_mapping': [('id', 'id', 'integer PRIMARY KEY'), ('name', 'name', 'text')],
    }
    attributes.update(overrides)
    for name in [k for k, v in attributes.items() if v is _DELETE]:
        del attributes[name]
    return type('OrdersDatasetPipeline', (), attributes)


_DELETE = object()


def problems_of(cls):
    with pytest.raises(DefinitionError) as error:
        dataset_pipeline_spec(cls)
    assert error.value.pipeline == 'OrdersDatasetPipeline'
    return error.value


def test_a_valid_class_becomes_a_spec_with_utc_dates():
    spec = dataset_pipeline_spec(pipeline(end_date=datetime.datetime(2021, 1, 1)))
    assert spec.name == 'OrdersDatasetPipeline'
    assert [c.name for c in spec.columns] == ['id', 'name']
    assert spec.primary_key.name == 'id'
    assert spec.start_date.tzinfo == datetime.timezone.utc
    assert spec.schedule == '@daily'


def test_missing_attribute_names_class_and_attribute():
    error = problems_of(pipeline(table_name=_DELETE))
    assert str(error) == 'OrdersDatasetPipeline.table_name: is missing'


def test_every_problem_of_a_class_is_reported_at_once():
    error = problems_of(pipeline(
        table_name='x' * 64,
        field_mapping=[('a', 'col', 'text'), ('b', 'col', 'text'), ('c', 'other', 'integr'), ('d', 'e')],
        end_date=datetime.datetime(2019, 1, 1),
    ))
    attributes = [attribute for attribute, _ in error.problems]
    assert attributes == ['table_name', 'end_date', 'field_mapping[1]', 'field_mapping[2]', 'field_mapping[3]']
    message = str(error)
    assert "OrdersDatasetPipeline.table_name: table name 'xxx" in message and 'is 64 bytes' in message
    assert "OrdersDatasetPipeline.field_mapping[1]: duplicate column 'col' (also field_mapping[0])" in message
    assert "OrdersDatasetPipeline.field_mapping[2]: column 'other': unknown column type 'integr'" in message
    assert 'is not after start_date' in message


def test_identifier_limit_counts_bytes_not_characters():
    # 32 two-byte characters: 32 characters, 64 bytes.
    error = problems_of(pipeline(field_mapping=[('a', 'é' * 32, 'text')]))
    assert 'is 64 bytes; PostgreSQL identifiers are at most 63' in str(error)
    assert dataset_pipeline_spec(pipeline(field_mapping=[('a', 'é' * 31, 'text')]))


@pytest.mark.parametrize('overrides, attribute, message', [
    ({'field_mapping': []}, 'field_mapping', 'must be a non-empty list'),
    ({'field_mapping': None}, 'field_mapping', 'must be a non-empty list'),
    ({'source_path': 'ftp://x/y'}, 'source_path', 'must be a path under the source connection'),
    ({'source_path': 'v4/orders'}, 'source_path', 'starting with /'),
    ({'source_conn_id': ''}, 'source_conn_id', 'must be an Airflow connection id'),
    ({'target_db': ''}, 'target_db', 'must be an Airflow connection id'),
    ({'start_date': '2020-01-01'}, 'start_date', 'must be a datetime'),
    ({'schedule_interval': 42}, 'schedule_interval', 'must be a cron expression'),
    ({'table_name': '_df_stg_orders'}, 'table_name', 'reserved for data-flow'),
    ({'field_mapping': [('a', 'a', 'int PRIMARY KEY'), ('b', 'b', 'int PRIMARY KEY')]},
     'field_mapping', 'more than one PRIMARY KEY column: a, b'),
    ({'field_mapping': [('a', 'a', 'text); DROP TABLE orders; --')]}, 'field_mapping[0]', 'is not a single column type'),
])
def test_bad_attributes_are_named(overrides, attribute, message):
    error = problems_of(pipeline(**overrides))
    assert [a for a, _ in error.problems] == [attribute]
    assert message in str(error)


@pytest.fixture
def pipeline_package(tmp_path, monkeypatch):
    """A throwaway package of pipeline modules: one good, one with a broken class, one that
    does not import."""
    name = f'pipelines_{uuid.uuid4().hex[:8]}'
    package = tmp_path / name
    package.mkdir()
    (package / '__init__.py').write_text('')
    common = "import datetime\nSTART = datetime.datetime(2020, 1, 1)\n"
    (package / 'good.py').write_text(common + textwrap.dedent('''
        class GoodDatasetPipeline:
            table_name = 'good'
            source_path = '/good'
            target_db = 'datasets_db'
            start_date = START
            field_mapping = [('id', 'id', 'integer')]

        class NotAPipeline:
            pass
    '''))
    (package / 'mixed.py').write_text(common + textwrap.dedent('''
        from .good import GoodDatasetPipeline  # imported, so not discovered twice

        class BrokenDatasetPipeline:
            table_name = 'broken'
            source_path = '/broken'
            target_db = 'datasets_db'
            start_date = START
            field_mapping = [('id', 'id', 'integr')]

        class AlsoGoodDatasetPipeline(GoodDatasetPipeline):
            table_name = 'also_good'
    '''))
    (package / 'unimportable.py').write_text('raise RuntimeError("boom at import")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + '.')]:
        del sys.modules[module]


def test_one_broken_class_or_module_leaves_the_others_working(pipeline_package):
    found = discover(package=pipeline_package)
    assert sorted(found.specs) == ['AlsoGoodDatasetPipeline', 'GoodDatasetPipeline']
    assert sorted(found.errors) == ['BrokenDatasetPipeline', f'{pipeline_package}.unimportable']
    assert "BrokenDatasetPipeline.field_mapping[0]: column 'id': unknown column type 'integr'" in str(
        found.errors['BrokenDatasetPipeline'])
    assert 'boom at import' in str(found.errors[f'{pipeline_package}.unimportable'])


def test_the_shipped_pipelines_all_load():
    found = discover()
    assert found.errors == {}
    assert 'OMISDatasetPipeline' in found.specs


# -- strict classes, connections, conversions, allowances --------------------------------------

@pytest.mark.parametrize('attribute, message', [
    ('schedule', 'unknown attribute; did you mean schedule_interval?'),
    ('min_row_ratio', 'unknown attribute; did you mean min_rows_ratio?'),
    ('source_url', 'unknown attribute; did you mean source_path?'),
    ('colour', 'unknown attribute'),
])
def test_an_attribute_the_class_does_not_know_is_refused_with_the_nearest(attribute, message):
    error = problems_of(pipeline(**{attribute: 'x'}))
    assert str(error) == f'OrdersDatasetPipeline.{attribute}: {message}'


def test_an_unknown_attribute_and_other_problems_are_listed_together():
    error = problems_of(pipeline(schedule='@daily', field_mapping=[('id', 'id', 'bigitn PRIMARY KEY')]))
    assert 'OrdersDatasetPipeline.schedule: unknown attribute; did you mean schedule_interval?' in str(error)
    assert "unknown column type 'bigitn' (did you mean 'bigint'?)" in str(error)


def test_attributes_of_a_base_class_are_checked_too():
    base = type('TeamDefaults', (), {'target_db': 'datasets_db', 'scheduel_interval': '@daily'})
    cls = type('OrdersDatasetPipeline', (base,), {k: v for k, v in pipeline().__dict__.items()
                                                   if not k.startswith('_')})
    with pytest.raises(DefinitionError, match='scheduel_interval: unknown attribute; did you mean schedule_interval'):
        dataset_pipeline_spec(cls)


def test_optional_attributes_have_their_documented_defaults():
    spec = dataset_pipeline_spec(pipeline(target_db=_DELETE, schedule_interval=_DELETE))
    assert (spec.source_conn_id, spec.target_db, spec.schedule, spec.end_date) == ('datahub', 'datasets_db', None, None)
    assert (spec.min_rows_ratio, spec.all_null_columns, spec.allow_missing_fields) == (0.9, 'warn', frozenset())


def test_a_field_may_declare_a_conversion_checked_against_its_column():
    spec = dataset_pipeline_spec(pipeline(field_mapping=[
        ('id', 'id', 'integer PRIMARY KEY'), ('services', 'services', 'text[]', split(', '))]))
    assert str(spec.columns[1].conversion) == "split(', ')"
    error = problems_of(pipeline(field_mapping=[('services', 'services', 'text', split(', '))]))
    assert str(error) == ("OrdersDatasetPipeline.field_mapping[0]: column 'services': split(', ') gives a list of "
                          "strings: the column must be a text array (text[]), not 'text'")
    error = problems_of(pipeline(field_mapping=[('services', 'services', 'text[]', str.split)]))
    assert 'is not a conversion data-flow knows (dataflow.definitions.conversions.split)' in str(error)
    error = problems_of(pipeline(field_mapping=[('services', 'services', 'text[]', split(''))]))
    assert "split(''): the separator must be a non-empty string" in str(error)


def test_missing_fields_may_be_allowed_by_name_or_all_at_once():
    assert dataset_pipeline_spec(pipeline(allow_missing_fields=['name'])).allow_missing_fields == {'name'}
    assert dataset_pipeline_spec(pipeline(allow_missing_fields=True)).allow_missing_fields == {'id', 'name'}
    error = problems_of(pipeline(allow_missing_fields=['nmae']))
    assert str(error) == "OrdersDatasetPipeline.allow_missing_fields: 'nmae' is not a source field of field_mapping"
    assert 'must be a list of source fields' in str(problems_of(pipeline(allow_missing_fields='name')))


def test_view_classes_are_strict_too():
    from dataflow.definitions.views import view_pipeline_spec

    view = type('OrdersViewPipeline', (), {'view_name': 'v', 'dataset_pipeline': pipeline(), 'fields': True,
                                           'start_date': datetime.datetime(2020, 1, 1), 'where': 'true'})
    with pytest.raises(DefinitionError, match='OrdersViewPipeline.where: unknown attribute; did you mean where_clause'):
        view_pipeline_spec(view)
