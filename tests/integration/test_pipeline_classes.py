"""The standard tests every pipeline class in dataflow/pipelines gets without writing any:
it loads, its table can be created by PostgreSQL, and its NOT NULL fields are enforced
with errors that name them; a view pipeline's view renders and PostgreSQL accepts it."""

import datetime

import pytest

from dataflow.airflow.templates import airflow_macros
from dataflow.definitions import templates
from dataflow.definitions.discovery import discover, discover_views
from dataflow.errors import RecordError
from dataflow.load import ddl, views
from dataflow.load.copy import RecordRenderer
from dataflow.load.strategies import replace

DISCOVERED = discover()
ALL_NAMES = sorted(DISCOVERED.specs) + sorted(DISCOVERED.errors)


def loaded(discovery, name):
    """The spec of class `name`, or the test fails with why the class does not load."""
    if name in discovery.errors:
        pytest.fail(f'{name} does not load: {discovery.errors[name]}')
    return discovery.specs[name]


@pytest.fixture(params=ALL_NAMES)
def spec(request):
    return loaded(DISCOVERED, request.param)


def test_postgresql_accepts_its_table(spec, datasets_conn):
    name = replace.staging_table_name(spec.table_name, 'standard-test')
    try:
        ddl.create_table(datasets_conn, name, spec.columns)
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
    names = {replace.staging_table_name(spec.table_name, f'run-{i}') for i in range(1000)}
    assert len(names) == 1000
    assert all(len(n.encode()) <= 63 and n != spec.table_name for n in names)


# -- view pipelines -------------------------------------------------------------------------

DISCOVERED_VIEWS = discover_views()


@pytest.fixture(params=sorted(DISCOVERED_VIEWS.specs) + sorted(DISCOVERED_VIEWS.errors))
def view_spec(request):
    return loaded(DISCOVERED_VIEWS, request.param)


def test_its_view_renders_and_postgresql_accepts_it(view_spec, datasets_conn):
    logical_date = view_spec.start_date
    where = templates.render_where_clause(view_spec, templates.template_context(logical_date, airflow_macros(),
                                                                                params=view_spec.params))
    name = templates.view_name_for(view_spec, logical_date)
    assert len(name.encode()) <= 63
    ddl.create_table(datasets_conn, view_spec.dataset.table_name, view_spec.dataset.columns)
    datasets_conn.commit()
    assert views.create_view(datasets_conn, view_spec, name, where) == 0
    assert view_spec.end_date is None or view_spec.end_date > logical_date - datetime.timedelta(days=1)
