"""The Datasets pages in the Airflow UI (dataflow.airflow.ui), on the real api-server in
local mode, in headless Chromium: the list shows what the run loaded and how fresh it is,
the dataset page its columns, history and first rows, the views page a view's preview, a
broken class its errors. Screenshots
go to .artifacts/screenshots/."""

import datetime
import re

import psycopg2
import requests

from dataflow.airflow.templates import airflow_macros
from dataflow.definitions import templates
from dataflow.definitions.discovery import discover_views
from dataflow.load.views import create_view
from devstack.datahub_records import omis_record
from tests.support.browser import explained, new_page, screenshot
from tests.support.e2e import DAG_ID
from tests.support.omis import order

VIEW_PIPELINE = 'CompletedOMISOrderViewPipeline'
NOVEMBER = datetime.datetime(2017, 11, 1, tzinfo=datetime.timezone.utc)


def make_november_view(stack):
    """The view the view pipeline's DAG makes for November 2017, made by the same code."""
    spec = discover_views().specs[VIEW_PIPELINE]
    where = templates.render_where_clause(spec, templates.template_context(NOVEMBER, airflow_macros()))
    conn = psycopg2.connect(stack.datasets_dsn)
    try:
        return templates.view_name_for(spec, NOVEMBER), create_view(conn, spec, templates.view_name_for(spec, NOVEMBER),
                                                                    where)
    finally:
        conn.close()


def in_the_ui(page, stack, route):
    """Airflow's page of one of the plugin's views, and the frame showing the plugin's page."""
    page.goto(f'{stack.airflow.base_url}/plugin/{route}')
    frame = page.frame_locator('iframe')
    return frame


def test_a_viewer_sees_what_was_loaded_and_how_fresh(fresh_target, browser):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(230)),
                          *(order(i, 'complete', f'2017-11-{1 + i % 28:02d}T12:00:00Z') for i in range(300, 312)))
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    view, view_rows = make_november_view(stack)
    assert view_rows == 12

    with new_page(browser) as page, explained(page, 'local'):
        frame = in_the_ui(page, stack, 'datasets')
        row = frame.locator('#datasets tr[data-pipeline=OMISDatasetPipeline]')
        row.locator('td.rows').wait_for(timeout=60_000)
        assert row.locator('td.rows').inner_text() == '242'
        freshness = row.locator('td.freshness').inner_text()
        assert re.fullmatch(r'(just now|\d+ minutes? ago)', freshness.strip()), freshness
        assert row.get_by_text('success').count() == 1  # the last run's state, linking to it
        assert row.locator('svg.spark').count() == 0  # one load: no line to draw yet
        invalid = frame.locator('#invalid')
        assert 'BrokenE2EDatasetPipeline' in invalid.inner_text()
        assert "unknown column type 'bigitn' (did you mean 'bigint'?)" in invalid.inner_text()
        assert 'schedule: unknown attribute; did you mean schedule_interval?' in invalid.inner_text()
        screenshot(page, 'local-datasets')

        row.get_by_role('link', name='OMISDatasetPipeline').click()
        frame.locator('#columns').wait_for()
        assert 'omis_order_reference' in frame.locator('#columns').inner_text()
        history = frame.locator('#history tbody tr')
        assert history.count() == 1 and '242' in history.first.inner_text() and ' ms' in history.first.inner_text()
        assert frame.locator('#preview tbody tr').count() == 20
        assert f'public.{view}' in frame.locator('body').inner_text()  # the views built on it
        screenshot(page, 'local-dataset-omis')

        frame = in_the_ui(page, stack, 'dataset-views')
        frame.locator(f'tr[data-view={view}]').wait_for(timeout=60_000)
        assert '12' in frame.locator(f'tr[data-view={view}] td.number').inner_text()
        assert 'completion_date' in frame.locator(f'tr[data-view={view}] pre').inner_text()  # the rendered SQL
        screenshot(page, 'local-views')
        frame.get_by_role('link', name=view).click()
        frame.locator('#preview').wait_for()
        assert frame.locator('#preview tbody tr').count() == 12
        screenshot(page, 'local-view-preview')


def test_airflows_own_pages_show_the_description_and_the_table_as_an_asset(fresh_target):
    stack = fresh_target
    stack.source.omis.put(*(omis_record(i) for i in range(30)))
    run_id, run = stack.run_dag(DAG_ID)
    assert run['state'] == 'success'
    dag = stack.api.dag(DAG_ID)
    assert dag['description'] == ('Orders for the Overseas Market Introduction Service (OMIS), from Data Hub: '
                                  'datahub: /v4/dataset/omis-dataset -> datasets_db: omis_dataset')
    [asset] = [a for a in stack.api.assets() if a['uri'] == 'dataflow://datasets_db/public/omis_dataset']
    assert [t['dag_id'] + '.' + t['task_id'] for t in asset['producing_tasks']] == [f'{DAG_ID}.swap']
    assert {t['dag_id'] for t in asset['consuming_tasks']} == {VIEW_PIPELINE, 'CancelledOMISOrderViewPipeline'}
    events = stack.api.asset_events(asset['id'])
    assert [(e['source_dag_id'], e['source_run_id'], e['source_task_id']) for e in events][-1] == (DAG_ID, run_id,
                                                                                                   'swap')


def test_in_local_mode_the_pages_let_in_whom_airflow_lets_in(stack):
    # Local mode signs everyone in as an admin (simple auth manager, all admins): the pages
    # follow the auth manager, so they answer as Airflow's own API does. Refusals are tested
    # with a real auth manager: tests/e2e/test_sso.py.
    base = stack.airflow.base_url
    assert requests.get(f'{base}/api/v2/dags', timeout=30).status_code == 200
    assert requests.get(f'{base}/dataflow/api/datasets', timeout=30).status_code == 200


def test_in_local_mode_every_response_carries_the_security_headers_too(stack):
    # The plugin that adds them is loaded by every api-server data-flow starts; the policy
    # itself, and that it breaks no page, are tested in SSO mode (tests/e2e/test_sso.py) and
    # by every browser test here (tests/support/browser.py).
    base = stack.airflow.base_url
    for path in ('/', '/dags', '/api/v2/dags', '/dataflow/datasets', '/plugin/datasets'):
        headers = requests.get(base + path, timeout=30).headers
        assert (headers['X-Frame-Options'], headers['X-Content-Type-Options'], headers['Referrer-Policy']) == (
            'SAMEORIGIN', 'nosniff', 'same-origin'), path
        assert "frame-ancestors 'self'" in headers['Content-Security-Policy'], path
        assert "script-src 'self';" in headers['Content-Security-Policy'], path
