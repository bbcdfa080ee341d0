import datetime

import psycopg2
import pytest
from psycopg2 import sql

from dataflow import views
from dataflow.constants import ConfigurationError
from dataflow.demo.omis_records import omis_record
from dataflow.errors import DataflowError, PipelineDefinitionError
from dataflow.meta.view_pipelines import CancelledOMISOrderViewPipeline, CompletedOMISOrderViewPipeline
from dataflow.pipelines import view_pipeline_spec
from dataflow.sync import sync
from dataflow.view_macros import financial_year_end, financial_year_start, month_end, month_start
from tests.test_sync import omis_spec

UTC = datetime.timezone.utc


def day(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def render(cls, ds, **overrides):
    spec = view_pipeline_spec(type(cls.__name__, (cls,), overrides))
    return views.render_where_clause(spec, views.template_context(day(ds), params=spec.params))


@pytest.mark.parametrize('value, start, end', [
    ('2020-02-10', '2020-02-01', '2020-02-29'),    # leap year
    ('2019-02-28', '2019-02-01', '2019-02-28'),
    ('2000-02-01', '2000-02-01', '2000-02-29'),    # divisible by 400: leap
    ('1900-02-01', '1900-02-01', '1900-02-28'),    # divisible by 100: not
    ('2017-12-31', '2017-12-01', '2017-12-31'),    # year end
    ('2018-04-30', '2018-04-01', '2018-04-30'),
    (datetime.date(2021, 1, 31), '2021-01-01', '2021-01-31'),
    (day('2021-11-15'), '2021-11-01', '2021-11-30'),
])
def test_month_helpers(value, start, end):
    assert (month_start(value), month_end(value)) == (start, end)


@pytest.mark.parametrize('first_day, value, start, end', [
    ('04-01', '2018-03-31', '2017-04-01', '2018-03-31'),
    ('04-01', '2018-04-01', '2018-04-01', '2019-03-31'),
    ('04-01', '2018-01-01', '2017-04-01', '2018-03-31'),
    ('01-01', '2018-01-01', '2018-01-01', '2018-12-31'),
    ('01-01', '2017-12-31', '2017-01-01', '2017-12-31'),
    ('10-15', '2020-10-14', '2019-10-15', '2020-10-14'),
    ('10-15', '2020-10-15', '2020-10-15', '2021-10-14'),
    ('03-01', '2020-02-29', '2019-03-01', '2020-02-29'),   # a leap year's end
])
def test_financial_year_boundaries(monkeypatch, first_day, value, start, end):
    monkeypatch.setattr('dataflow.constants.FINANCIAL_YEAR_FIRST_MONTH_DAY', first_day)
    assert (financial_year_start(value), financial_year_end(value)) == (start, end)


@pytest.mark.parametrize('bad', ['4-1', '04/01', '13-01', '02-29', '04-31', '', 'april'])
def test_a_wrong_financial_year_setting_is_an_error_not_a_default(monkeypatch, bad):
    monkeypatch.setattr('dataflow.constants.FINANCIAL_YEAR_FIRST_MONTH_DAY', bad)
    with pytest.raises(ConfigurationError, match='FINANCIAL_YEAR_FIRST_MONTH_DAY'):
        financial_year_start('2018-01-01')
    with pytest.raises(DataflowError, match=r'CancelledOMISOrderViewPipeline.where_clause: ConfigurationError: '
                                            'FINANCIAL_YEAR_FIRST_MONTH_DAY'):
        render(CancelledOMISOrderViewPipeline, '2018-01-01')


@pytest.mark.parametrize('ds, month', [('2017-11-01', '2017-11-01'), ('2018-02-01', '2018-02-01'),
                                       ('2020-02-01', '2020-02-01'), ('2017-12-01', '2017-12-01')])
def test_completed_orders_render_for_the_run_month(ds, month):
    rendered = render(CompletedOMISOrderViewPipeline, ds)
    assert f"date_trunc('month', to_date('{month}', 'YYYY-MM-DD'))" in rendered
    assert not rendered.endswith(';')


@pytest.mark.parametrize('ds, fy_start, through', [
    ('2017-11-01', '2017-04-01', '2017-11-30'),
    ('2018-02-01', '2017-04-01', '2018-02-28'),
    ('2018-03-01', '2017-04-01', '2018-03-31'),   # last month of the financial year
    ('2018-04-01', '2018-04-01', '2018-04-30'),   # first month of the next
    ('2020-02-01', '2019-04-01', '2020-02-29'),   # leap year
])
def test_cancelled_orders_render_the_financial_year_to_date(monkeypatch, ds, fy_start, through):
    monkeypatch.setattr('dataflow.constants.FINANCIAL_YEAR_FIRST_MONTH_DAY', '04-01')
    rendered = render(CancelledOMISOrderViewPipeline, ds)
    assert f"cancelled_date::DATE >= to_date('{fy_start}', 'YYYY-MM-DD')" in rendered
    assert f"cancelled_date::DATE <= to_date('{through}', 'YYYY-MM-DD')" in rendered


@pytest.mark.parametrize('ds, last_day', [('2020-01-01', '2020-01-31'), ('2020-02-01', '2020-02-29'),
                                          ('2019-02-01', '2019-02-28'), ('2018-12-01', '2018-12-31')])
def test_airflow_macros_work_as_data_engineers_write_them(ds, last_day):
    where = """completion_date::DATE <= to_date('{{ (macros.datetime.strptime(ds, '%Y-%m-%d') +
        macros.dateutil.relativedelta.relativedelta(months=+1, days=-1)).strftime('%Y-%m-%d') }}', 'YYYY-MM-DD')"""
    assert f"to_date('{last_day}', 'YYYY-MM-DD')" in render(CompletedOMISOrderViewPipeline, ds, where_clause=where)
    plain = """to_date('{{ macros.datetime.strptime(ds, '%Y-%m-%d') +
        macros.dateutil.relativedelta.relativedelta(months=+1, days=-1) }}', 'YYYY-MM-DD') IS NOT NULL"""
    assert f"to_date('{last_day} 00:00:00', 'YYYY-MM-DD')" in render(CompletedOMISOrderViewPipeline, ds, where_clause=plain)


def test_params_and_interval_names_are_available():
    where = "market = '{{ params.market }}' AND created_date >= '{{ data_interval_start }}' AND '{{ ds_nodash }}' <> ''"
    rendered = render(CompletedOMISOrderViewPipeline, '2018-01-01', where_clause=where, params={'market': 'France'})
    assert rendered.startswith("market = 'France' AND created_date >= '2018-01-01 00:00:00+00:00' AND '20180101'")


@pytest.mark.parametrize('where, message', [
    ("order_status = 'complete'; DROP TABLE omis_dataset", 'holds more than one SQL statement'),
    ("1 = 1 ORDER BY 1", 'is not a single condition'),
    ("{{ no_such_name }} = 1", "where_clause: 'no_such_name' is undefined"),
    ("order_status = 'complete' AND (", 'PostgreSQL cannot parse'),
])
def test_bad_where_clauses_are_refused_by_name(where, message):
    with pytest.raises(DataflowError, match=message.replace('(', r'\(')):
        render(CompletedOMISOrderViewPipeline, '2018-01-01', where_clause=where)


def test_view_names_carry_the_interval():
    spec = view_pipeline_spec(CompletedOMISOrderViewPipeline)
    assert views.view_name_for(spec, day('2017-11-01')) == 'completed_omis_orders_2017_11_01'
    assert views.view_name_for(spec, day('2017-11-01T06:30')) == 'completed_omis_orders_2017_11_01_0630'


# -- class validation ----------------------------------------------------------------------

def view_class(**overrides):
    return type('OrdersViewPipeline', (CompletedOMISOrderViewPipeline,), overrides)


def test_fields_true_is_every_dataset_column():
    spec = view_pipeline_spec(view_class(fields=True))
    assert [f.expression for f in spec.fields] == [c.name for c in spec.dataset.columns]
    assert all(f.alias is None and f.is_column for f in spec.fields)


@pytest.mark.parametrize('overrides, attribute, message', [
    ({'fields': [('1 FROM x; DROP TABLE y', 'A')]}, 'fields[0]', 'PostgreSQL cannot parse expression'),
    ({'fields': [('1; DROP TABLE y; SELECT 1', 'A')]}, 'fields[0]', 'holds more than one SQL statement'),
    ({'fields': [('a, b', 'A')]}, 'fields[0]', 'is not a single SQL expression'),
    ({'fields': [('a', 'A'), ('b', 'A')]}, 'fields[1]', "duplicate alias 'A'"),
    ({'fields': [('a', 'x' * 64)]}, 'fields[0]', 'is 64 bytes'),
    ({'fields': []}, 'fields', 'must be True'),
    ({'view_name': 'v' * 48}, 'view_name', 'leaving no room for the interval suffix'),
    ({'where_clause': "{{ ds }"}, 'where_clause', 'jinja cannot parse it'),
    ({'dataset_pipeline': 'OMISDatasetPipeline'}, 'dataset_pipeline', 'must be a dataset pipeline class'),
    ({'catchup': 'yes'}, 'catchup', 'must be True or False'),
    ({'params': ['a']}, 'params', 'must be a dict'),
])
def test_bad_view_classes_are_named(overrides, attribute, message):
    with pytest.raises(PipelineDefinitionError) as error:
        view_pipeline_spec(view_class(**overrides))
    assert [a for a, _ in error.value.problems] == [attribute]
    assert message in str(error.value) and str(error.value).startswith('OrdersViewPipeline.')


def test_an_invalid_dataset_pipeline_is_named():
    broken = type('BrokenDatasetPipeline', (), {'table_name': 't'})
    with pytest.raises(PipelineDefinitionError, match=r'OrdersViewPipeline.dataset_pipeline: BrokenDatasetPipeline '
                                                      r'is not valid: BrokenDatasetPipeline.source_url: is missing'):
        view_pipeline_spec(view_class(dataset_pipeline=broken))


# -- in PostgreSQL -------------------------------------------------------------------------

def view_rows(conn, name, order_by='Company Name'):
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT * FROM {} ORDER BY {}').format(sql.Identifier(name), sql.Identifier(order_by)))
        columns = [c.name for c in cursor.description]
        rows = cursor.fetchall()
    conn.commit()
    return columns, rows


def completed_in(records, month):
    return sorted(
        (r['company__name'],) for r in records
        if r['status'] == 'complete' and r['completed_on'] and r['completed_on'][:7] == month
    )


def order(index, status, when, version=0):
    """An OMIS record with its status and the matching date set to `when`."""
    record = omis_record(index, version=version)
    record['status'] = status
    record['completed_on'] = when if status == 'complete' else None
    record['cancelled_on'] = when if status == 'cancelled' else None
    return record


@pytest.fixture
def loaded_omis(source, hawk_client, datasets_conn):
    source.put(*(order(i, 'complete', f'2017-{11 + i % 2}-{1 + i % 28:02d}T10:00:00Z') for i in range(40)),
               *(order(i, 'cancelled', f'2018-0{1 + i % 5}-15T10:00:00Z') for i in range(40, 70)))
    spec = omis_spec(source)
    sync(spec, hawk_client, datasets_conn, 'load-1')
    return spec


def view_spec(cls, dataset_spec):
    spec = view_pipeline_spec(cls)
    return type(spec)(**{**spec.__dict__, 'dataset': dataset_spec})


def make_view(conn, spec, ds):
    name = views.view_name_for(spec, day(ds))
    where = views.render_where_clause(spec, views.template_context(day(ds), params=spec.params))
    return name, views.create_view(conn, spec, name, where)


def test_views_hold_their_interval_with_quoted_aliases(loaded_omis, source, datasets_conn):
    spec = view_spec(CompletedOMISOrderViewPipeline, loaded_omis)
    name, rows = make_view(datasets_conn, spec, '2017-11-01')
    assert name == 'completed_omis_orders_2017_11_01'
    columns, got = view_rows(datasets_conn, name)
    assert columns == ['Company Name', 'DIT Team', 'Subtotal', 'UK Region', 'Market', 'Sector', 'Services',
                       'Delivery Date', 'Payment Received Date', 'Completion Date']
    assert sorted((r[0],) for r in got) == completed_in(source.records(), '2017-11') and rows == 20


def test_cancelled_view_holds_the_financial_year_to_date(loaded_omis, source, datasets_conn, monkeypatch):
    monkeypatch.setattr('dataflow.constants.FINANCIAL_YEAR_FIRST_MONTH_DAY', '04-01')
    spec = view_spec(CancelledOMISOrderViewPipeline, loaded_omis)
    name, rows = make_view(datasets_conn, spec, '2018-03-01')  # FY 2017-04-01 .. 2018-03-31: Jan-Mar
    expected = [r for r in source.records() if r['status'] == 'cancelled' and r['cancelled_on'] < '2018-04']
    assert rows == len(expected) == 18
    name, rows = make_view(datasets_conn, spec, '2018-04-01')  # a new financial year: April only
    assert rows == len([r for r in source.records() if r['status'] == 'cancelled' and r['cancelled_on'][:7] == '2018-04'])


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
    spec = view_spec(CompletedOMISOrderViewPipeline, omis_spec(source))
    with pytest.raises(DataflowError, match=r'CompletedOMISOrderViewPipeline: dataset table public.omis_dataset '
                                            r'does not exist yet \(run OMISDatasetPipeline first\)'):
        make_view(datasets_conn, spec, '2017-11-01')


def test_views_survive_a_dataset_swap(loaded_omis, source, hawk_client, datasets_conn, monkeypatch):
    monkeypatch.setattr('dataflow.constants.FINANCIAL_YEAR_FIRST_MONTH_DAY', '04-01')
    completed = view_spec(CompletedOMISOrderViewPipeline, loaded_omis)
    cancelled = view_spec(CancelledOMISOrderViewPipeline, loaded_omis)
    november, _ = make_view(datasets_conn, completed, '2017-11-01')
    december, _ = make_view(datasets_conn, completed, '2017-12-01')
    march, _ = make_view(datasets_conn, cancelled, '2018-03-01')
    with datasets_conn.cursor() as cursor:  # and a view an analyst built on one of them
        cursor.execute(sql.SQL('CREATE VIEW november_total AS SELECT count(*) AS n FROM {}').format(
            sql.Identifier(november)))
    datasets_conn.commit()

    source.remove(*(omis_record(i)['reference'] for i in range(0, 10)))
    source.put(*(order(i, 'complete', '2017-11-20T09:00:00Z', version=1) for i in range(100, 107)))
    source.put(*(order(i, 'cancelled', '2018-02-02T09:00:00Z', version=1) for i in range(40, 45)))
    result = sync(loaded_omis, hawk_client, datasets_conn, 'load-2')
    assert set(result.swap.views_repointed) == {f'public.{november}', f'public.{december}', f'public.{march}'}

    records = source.records()
    assert sorted((r[0],) for r in view_rows(datasets_conn, november)[1]) == completed_in(records, '2017-11')
    assert sorted((r[0],) for r in view_rows(datasets_conn, december)[1]) == completed_in(records, '2017-12')
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT n FROM november_total')
        assert cursor.fetchone() == (len(completed_in(records, '2017-11')),)
        cursor.execute(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(march)))
        assert cursor.fetchone() == (len([r for r in records if r['status'] == 'cancelled'
                                          and r['cancelled_on'] < '2018-04']),)
    datasets_conn.commit()
