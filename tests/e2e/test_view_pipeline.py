"""View pipelines end to end: catch-up creates one view per month over the loaded OMIS
table, and the views answer with new data after the next dataset swap."""

from psycopg2 import sql

from tests.support.omis import completed_in, order

VIEW_DAG = 'CompletedOMISOrderViewPipeline'
# start_date 2017-11-01 to end_date 2018-02-01: Airflow runs the end date's interval too.
MONTHS = ['2017-11', '2017-12', '2018-01', '2018-02']


def view_companies(stack, name):
    conn = stack.connect()
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT "Company Name" FROM {}').format(sql.Identifier(name)))
        rows = sorted(cursor.fetchall())
    conn.close()
    return rows


def test_catch_up_makes_a_view_per_month_and_they_survive_a_swap(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(order(i, 'complete', f'{MONTHS[i % 4]}-{1 + i % 28:02d}T12:00:00Z') for i in range(120)),
                     *(order(i, 'cancelled', '2017-12-05T12:00:00Z') for i in range(120, 130)),
                     *(order(i, 'complete', '2018-06-01T12:00:00Z') for i in range(130, 140)))
    run_id, run = stack.run_dag('OMISDatasetPipeline')
    assert run['state'] == 'success'

    stack.api.unpause(VIEW_DAG)
    runs = stack.api.wait_runs_finished(VIEW_DAG, len(MONTHS))
    assert sorted(r['logical_date'][:7] for r in runs) == MONTHS
    assert all(r['state'] == 'success' for r in runs), [(r['dag_run_id'], r['state']) for r in runs]
    names = {}
    for view_run in runs:
        created = stack.api.xcom(VIEW_DAG, view_run['dag_run_id'], 'create-view')
        month = view_run['logical_date'][:7]
        names[month] = created['view']
        assert created['view'] == f'completed_omis_orders_{month.replace("-", "_")}_01'
        assert view_companies(stack, created['view']) == completed_in(stack.source.omis.records(), month)
        assert created['rows'] == 30

    # The source changes; the next dataset run swaps the table in under the views.
    records = stack.source.omis.records()
    december = [r for r in records if (r['completed_on'] or '')[:7] == '2017-12']
    others = [r for r in records if r not in december]
    stack.source.omis.remove(*(r['reference'] for r in december[:5] + others[:15]))
    stack.source.omis.put(*(order(i, 'complete', '2017-12-24T12:00:00Z', version=1) for i in range(200, 212)))
    run_id, run = stack.run_dag('OMISDatasetPipeline')
    assert run['state'] == 'success'
    swapped = stack.api.xcom('OMISDatasetPipeline', run_id, 'swap')
    assert sorted(swapped['views_repointed']) == sorted(f'public.{n}' for n in names.values())
    for month, name in names.items():
        assert view_companies(stack, name) == completed_in(stack.source.omis.records(), month)
    assert len(view_companies(stack, names['2017-12'])) == 30 - 5 + 12  # 5 December orders removed, 12 added
