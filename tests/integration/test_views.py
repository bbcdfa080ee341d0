"""View pipelines' views in PostgreSQL: each holds its interval under quoted aliases, a re-run
replaces it keeping its grants, and views survive the next dataset swap."""

import datetime
import decimal

import pytest
from psycopg2 import sql

from dataflow.airflow.templates import airflow_macros
from dataflow.definitions import templates
from dataflow.definitions.views import view_pipeline_spec
from dataflow.errors import DataflowError
from dataflow.load import views
from dataflow.pipelines.views import CancelledOMISOrderViewPipeline, CompletedOMISOrderViewPipeline
from devstack.datahub_records import omis_record
from tests.support.omis import completed_in, omis_spec, order
from tests.support.runs import run_locally
from tests.support.settings import use_settings

UTC = datetime.timezone.utc


def day(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def view_class(**overrides):
    return type('OrdersViewPipeline', (CompletedOMISOrderViewPipeline,), overrides)



def view_rows(conn, name, order_by='Company Name'):
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT * FROM {} ORDER BY {}').format(sql.Identifier(name), sql.Identifier(order_by)))
        columns = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    conn.commit()
    return columns, rows


@pytest.fixture
def loaded_omis(source, hawk_client, datasets_dsn):
    source.omis.put(*(order(i, 'complete', f'2017-{11 + i % 2}-{1 + i % 28:02d}T10:00:00Z') for i in range(40)),
               *(order(i, 'cancelled', f'2018-0{1 + i % 5}-15T10:00:00Z') for i in range(40, 70)))
    spec = omis_spec()
    run_locally(spec, hawk_client, datasets_dsn, 'load-1')
    return spec


def view_spec(cls, dataset_spec):
    spec = view_pipeline_spec(cls)
    return type(spec)(**{**spec.__dict__, 'dataset': dataset_spec})


def make_view(conn, spec, ds):
    name = templates.view_name_for(spec, day(ds))
    where = templates.render_where_clause(spec, templates.template_context(day(ds), airflow_macros(),
                                                                           params=spec.params))
    return name, views.create_view(conn, spec, name, where)


def test_views_hold_their_interval_with_quoted_aliases(loaded_omis, source, datasets_conn):
    spec = view_spec(CompletedOMISOrderViewPipeline, loaded_omis)
    name, rows = make_view(datasets_conn, spec, '2017-11-01')
    assert name == 'completed_omis_orders_2017_11_01'
    columns, got = view_rows(datasets_conn, name)
    assert columns == ['Company Name', 'DIT Team', 'Subtotal', 'UK Region', 'Market', 'Sector', 'Services',
                       'Delivery Date', 'Payment Received Date', 'Completion Date']
    assert sorted((r[0],) for r in got) == completed_in(source.omis.records(), '2017-11') and rows == 20
    # Subtotal: pence (Data Hub's subtotal_cost) as pounds and pence.
    completed = [r for r in source.omis.records() if r['status'] == 'complete' and r['completed_on'][:7] == '2017-11']
    assert sorted((r[0], r[2]) for r in got) == sorted(
        (r['company__name'], (decimal.Decimal(r['subtotal_cost']) / 100).quantize(decimal.Decimal('0.01')))
        for r in completed)


def test_cancelled_view_holds_the_financial_year_to_date(loaded_omis, source, datasets_conn, monkeypatch):
    use_settings(monkeypatch, financial_year_first_month_day='04-01')
    spec = view_spec(CancelledOMISOrderViewPipeline, loaded_omis)
    name, rows = make_view(datasets_conn, spec, '2018-03-01')  # FY 2017-04-01 .. 2018-03-31: Jan-Mar
    expected = [r for r in source.omis.records() if r['status'] == 'cancelled' and r['cancelled_on'] < '2018-04']
    assert rows == len(expected) == 18
    name, rows = make_view(datasets_conn, spec, '2018-04-01')  # a new financial year: April only
    assert rows == len([r for r in source.omis.records() if r['status'] == 'cancelled' and r['cancelled_on'][:7] == '2018-04'])


def test_a_rerun_replaces_the_view_and_keeps_its_grants(loaded_omis, datasets_conn, pg_admin_dsn):
    spec = view_spec(CompletedOMISOrderViewPipeline, loaded_omis)
    name, _ = make_view(datasets_conn, spec, '2017-11-01')
    with datasets_conn.cursor() as cursor:
        cursor.execute(sql.SQL('GRANT SELECT ON {} TO PUBLIC').format(sql.Identifier(name)))
    datasets_conn.commit()
    make_view(datasets_conn, spec, '2017-11-01')
    narrower = view_spec(view_class(fields=[('company_name', 'Company Name')], view_name='completed_omis_orders'),
                         loaded_omis)
    assert make_view(datasets_conn, narrower, '2017-11-01') == (name, 20)  # columns changed: dropped, created
    columns, _ = view_rows(datasets_conn, name)
    assert columns == ['Company Name']
    with datasets_conn.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege('public', %s, 'SELECT')", (name,))
        assert cursor.fetchone() == (True,)
    datasets_conn.commit()


def test_a_missing_dataset_table_is_named(source, datasets_conn):
    spec = view_spec(CompletedOMISOrderViewPipeline, omis_spec())
    with pytest.raises(DataflowError, match=r'CompletedOMISOrderViewPipeline: dataset table public.omis_dataset '
                                            r'does not exist yet \(run OMISDatasetPipeline first\)'):
        make_view(datasets_conn, spec, '2017-11-01')


def test_views_survive_a_dataset_swap(loaded_omis, source, hawk_client, datasets_dsn, datasets_conn, monkeypatch):
    use_settings(monkeypatch, financial_year_first_month_day='04-01')
    completed = view_spec(CompletedOMISOrderViewPipeline, loaded_omis)
    cancelled = view_spec(CancelledOMISOrderViewPipeline, loaded_omis)
    november, _ = make_view(datasets_conn, completed, '2017-11-01')
    december, _ = make_view(datasets_conn, completed, '2017-12-01')
    march, _ = make_view(datasets_conn, cancelled, '2018-03-01')
    with datasets_conn.cursor() as cursor:  # and a view an analyst built on one of them
        cursor.execute(sql.SQL('CREATE VIEW november_total AS SELECT count(*) AS n FROM {}').format(
            sql.Identifier(november)))
    datasets_conn.commit()

    source.omis.remove(*(omis_record(i)['reference'] for i in range(0, 10)))
    source.omis.put(*(order(i, 'complete', '2017-11-20T09:00:00Z', version=1) for i in range(100, 107)))
    source.omis.put(*(order(i, 'cancelled', '2018-02-02T09:00:00Z', version=1) for i in range(40, 45)))
    result = run_locally(loaded_omis, hawk_client, datasets_dsn, 'load-2')
    assert set(result.published['views_repointed']) == {f'public.{november}', f'public.{december}', f'public.{march}'}

    records = source.omis.records()
    assert sorted((r[0],) for r in view_rows(datasets_conn, november)[1]) == completed_in(records, '2017-11')
    assert sorted((r[0],) for r in view_rows(datasets_conn, december)[1]) == completed_in(records, '2017-12')
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT n FROM november_total')
        assert cursor.fetchone() == (len(completed_in(records, '2017-11')),)
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(march)))
        assert cursor.fetchone() == (len([r for r in records if r['status'] == 'cancelled'
                                          and r['cancelled_on'] < '2018-04']),)
    datasets_conn.commit()
