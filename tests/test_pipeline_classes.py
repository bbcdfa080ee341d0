"""The standard tests every dataset pipeline class in dataflow/meta gets without writing
any: it loads, its table can be created by PostgreSQL, and its NOT NULL fields are
enforced with errors that name them."""

import pytest

from dataflow import tables
from dataflow.errors import RecordError
from dataflow.pipelines import discover
from dataflow.records import RecordRenderer

DISCOVERED = discover()
ALL_NAMES = sorted(DISCOVERED.specs) + sorted(DISCOVERED.errors)


@pytest.fixture(params=ALL_NAMES)
def spec(request):
    name = request.param
    if name in DISCOVERED.errors:
        pytest.fail(f'{name} does not load: {DISCOVERED.errors[name]}')
    return DISCOVERED.specs[name]


def test_postgresql_accepts_its_table(spec, datasets_conn):
    name = tables.staging_table_name(spec.table_name, 'standard-test')
    try:
        tables.create_table(datasets_conn, name, spec.columns)
        with datasets_conn.cursor() as cursor:
            cursor.execute(
                'SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum',
                (name,),
            )
            assert [row[0] for row in cursor.fetchall()] == [c.name for c in spec.columns]
    finally:
        datasets_conn.rollback()


def test_its_not_null_fields_are_enforced_by_name(spec):
    renderer = RecordRenderer(spec.columns)
    complete = {c.source_field: 'x' for c in spec.columns}
    for column in spec.columns:
        if column.type.not_null:
            record = {k: v for k, v in complete.items() if k != column.source_field}
            with pytest.raises(RecordError, match=f'field {column.source_field} \\(column {column.name}\\)'):
                renderer.render([record], 'standard-test')


def test_its_staging_tables_fit_and_never_collide(spec):
    names = {tables.staging_table_name(spec.table_name, f'run-{i}') for i in range(1000)}
    assert len(names) == 1000
    assert all(len(n.encode()) <= 63 and n != spec.table_name for n in names)
