import datetime
import sys
import textwrap
import uuid

import pytest

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.definitions.discovery import discover
from dataflow.errors import DefinitionError


def pipeline(**overrides):
    attributes = {
        'table_name': 'orders',
        'source_url': 'http://127.0.0.1:9/orders',
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
    ({'source_url': 'ftp://x/y'}, 'source_url', 'must be an http(s) URL'),
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
            source_url = 'http://127.0.0.1:9/good'
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
            source_url = 'http://127.0.0.1:9/broken'
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
