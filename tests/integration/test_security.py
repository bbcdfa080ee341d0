"""SQL injection attempts through every name and value data-flow puts into SQL."""

import datetime

import pytest
from psycopg2 import sql

from dataflow.airflow.templates import airflow_macros
from dataflow.definitions import templates
from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.definitions.views import view_pipeline_spec
from dataflow.errors import DataflowError
from dataflow.load import ddl, views
from dataflow.load.strategies import replace
from dataflow.pipelines.datasets import OMISDatasetPipeline
from tests.support.runs import run_locally

HOSTILE = 'x"; DROP TABLE victim; --'
HOSTILE_VALUE = "'); DROP TABLE victim; --\\\t"


@pytest.fixture
def victim(datasets_conn):
    with datasets_conn.cursor() as cursor:
        cursor.execute('CREATE TABLE victim (id int)')
        cursor.execute('INSERT INTO victim VALUES (1)')
    datasets_conn.commit()
    yield
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM victim')
        assert cursor.fetchone() == (1,), 'the victim table was touched'
    datasets_conn.commit()


def hostile_pipeline(source):
    return type('HostileDatasetPipeline', (), {
        'table_name': 'orders' + HOSTILE,
        'source_path': '/v4/dataset/omis-dataset',
        'target_db': 'datasets_db',
        'start_date': datetime.datetime(2020, 1, 1),
        'field_mapping': [
            ('reference', 'ref' + HOSTILE, 'text PRIMARY KEY'),
            ('company__name', 'company"); DELETE FROM victim; --', 'text'),
        ],
    })


def test_hostile_names_and_values_are_data_not_sql(source, hawk_client, datasets_dsn, datasets_conn, victim):
    source.omis.put({'reference': HOSTILE_VALUE, 'company__name': HOSTILE}, {'reference': 'A', 'company__name': None})
    spec = dataset_pipeline_spec(hostile_pipeline(source))
    assert run_locally(spec, hawk_client, datasets_dsn, 'run-1').published['rows_after'] == 2
    with datasets_conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT {}, {} FROM {} ORDER BY 1').format(
            *(sql.Identifier(c.name) for c in spec.columns), sql.Identifier(spec.table_name)))
        assert cursor.fetchall() == [("'); DROP TABLE victim; --\\\t", HOSTILE), ('A', None)]
    datasets_conn.commit()


def test_hostile_view_names_and_aliases_are_identifiers(source, hawk_client, datasets_dsn, datasets_conn, victim):
    source.omis.put({'reference': 'A', 'company__name': 'Acme'})
    dataset = dataset_pipeline_spec(hostile_pipeline(source))
    run_locally(dataset, hawk_client, datasets_dsn, 'run-1')
    cls = type('HostileViewPipeline', (), {
        'view_name': 'v' + HOSTILE[:20], 'dataset_pipeline': hostile_pipeline(source),
        'start_date': datetime.datetime(2020, 1, 1), 'fields': True, 'where_clause': None,
    })
    spec = view_pipeline_spec(cls)
    name = templates.view_name_for(spec, datetime.datetime(2020, 1, 1))
    assert views.create_view(datasets_conn, spec, name, None) == 1
    # and the swap re-points that view by its quoted name
    run_locally(dataset, hawk_client, datasets_dsn, 'run-2')
    with datasets_conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(name)))
        assert cursor.fetchone() == (1,)
    datasets_conn.commit()


@pytest.mark.parametrize('where, params', [
    ("market = '{{ params.market }}'", {'market': "x'; DROP TABLE victim; --"}),
    ("market = 'x' UNION SELECT 1; DROP TABLE victim", {}),
    ("market = 'x'); DROP TABLE victim; --", {}),
])
def test_where_clause_injection_is_refused_before_any_sql_runs(source, datasets_conn, victim, where, params):
    cls = type('InjectedViewPipeline', (), {
        'view_name': 'injected', 'dataset_pipeline': OMISDatasetPipeline, 'start_date': datetime.datetime(2020, 1, 1),
        'fields': True, 'where_clause': where, 'params': params,
    })
    spec = view_pipeline_spec(cls)
    with pytest.raises(DataflowError, match='InjectedViewPipeline.where_clause'):
        templates.render_where_clause(spec, templates.template_context(datetime.datetime(2020, 1, 1),
                                                                      airflow_macros(), params=spec.params))


def test_staging_names_derived_from_hostile_tables_are_safe(datasets_conn, victim):
    name = replace.staging_table_name('t' + HOSTILE, 'run"; DROP TABLE victim; --')
    ddl.create_table(datasets_conn, name, dataset_pipeline_spec(OMISDatasetPipeline).columns[:1])
    ddl.drop_table(datasets_conn, name)
    datasets_conn.commit()
