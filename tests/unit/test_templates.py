"""View pipelines without a database: the date helpers, where-clauses rendered for a run
(with Airflow's own macros), view names, and the validation of view classes."""

import datetime

import pytest

from dataflow.airflow.templates import airflow_macros
from dataflow.definitions import templates
from dataflow.definitions.templates import financial_year_end, financial_year_start, month_end, month_start
from dataflow.definitions.views import view_pipeline_spec
from dataflow.errors import ConfigurationError, DataflowError, DefinitionError
from dataflow.pipelines.views import CancelledOMISOrderViewPipeline, CompletedOMISOrderViewPipeline
from tests.support.settings import use_settings

UTC = datetime.timezone.utc


def day(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def render(cls, ds, **overrides):
    spec = view_pipeline_spec(type(cls.__name__, (cls,), overrides))
    return templates.render_where_clause(spec, templates.template_context(day(ds), airflow_macros(),
                                                                          params=spec.params))


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
    use_settings(monkeypatch, financial_year_first_month_day=first_day)
    assert (financial_year_start(value), financial_year_end(value)) == (start, end)


@pytest.mark.parametrize('bad', ['4-1', '04/01', '13-01', '02-29', '04-31', '', 'april'])
def test_a_wrong_financial_year_setting_is_an_error_not_a_default(monkeypatch, bad):
    use_settings(monkeypatch, financial_year_first_month_day=bad)
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
    use_settings(monkeypatch, financial_year_first_month_day='04-01')
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
    assert templates.view_name_for(spec, day('2017-11-01')) == 'completed_omis_orders_2017_11_01'
    assert templates.view_name_for(spec, day('2017-11-01T06:30')) == 'completed_omis_orders_2017_11_01_0630'


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
    with pytest.raises(DefinitionError) as error:
        view_pipeline_spec(view_class(**overrides))
    assert [a for a, _ in error.value.problems] == [attribute]
    assert message in str(error.value) and str(error.value).startswith('OrdersViewPipeline.')


def test_an_invalid_dataset_pipeline_is_named():
    broken = type('BrokenDatasetPipeline', (), {'table_name': 't'})
    with pytest.raises(DefinitionError, match=r'OrdersViewPipeline.dataset_pipeline: BrokenDatasetPipeline '
                                                      r'is not valid: BrokenDatasetPipeline.source_path: is missing'):
        view_pipeline_spec(view_class(dataset_pipeline=broken))
