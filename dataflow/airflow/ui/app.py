"""The Datasets pages and their JSON API, as a FastAPI app the plugin mounts at /dataflow.

Plugin endpoints are not protected by Airflow's auth manager unless they ask it: every
route here depends on `reader`, which takes the user from the request's token (the UI's
JWT cookie, or an Authorization header) as Airflow's own API does, refuses anyone without
one (401), and anyone not allowed to read DAGs (403); the pipelines listed are the DAGs
the user may read. There are only GET routes, and the datasets database is read in
read-only transactions (dataflow.airflow.ui.data).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Annotated, Any

import jinja2
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dataflow.airflow.ui import PREFIX, data

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'templates')),
    autoescape=True,
)


def reader(user: Annotated[BaseUser, Depends(get_user)]) -> BaseUser:
    """The signed-in user, if they may read DAGs (a Viewer may); else 403."""
    if not get_auth_manager().is_authorized_dag(method='GET', user=user):
        raise HTTPException(status_code=403, detail='Reading the datasets needs permission to read DAGs')
    return user


Reader = Annotated[BaseUser, Depends(reader)]


def _readable(user: BaseUser) -> set[str]:
    return get_auth_manager().get_authorized_dag_ids(user=user, method='GET')


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _page(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(prefix=PREFIX, **context))


def _sparkline(values: list[int], width: int = 120, height: int = 24) -> str:
    """An SVG polyline of `values` (no script, no external asset)."""
    if len(values) < 2:
        return ''
    low, high = min(values), max(values)
    span = (high - low) or 1
    step = width / (len(values) - 1)
    points = ' '.join(f'{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}' for i, v in enumerate(values))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="rows over the last {len(values)} loads"><polyline points="{points}"/></svg>')


TEMPLATES.filters['sparkline'] = _sparkline
TEMPLATES.filters['number'] = lambda value: '–' if value is None else f'{value:,}'


def _dataset_json(row: data.DatasetRow) -> dict[str, Any]:
    last = row.last
    return {
        'pipeline': row.spec.name, 'table': row.spec.table_name, 'target_db': row.spec.target_db,
        'source': row.spec.source, 'schedule': None if row.spec.schedule is None else str(row.spec.schedule),
        'rows': last.rows_after if last else None,
        'last_swap': last.finished_at.isoformat() if last else None, 'age': row.age, 'stale': row.stale,
        'last_run': None if row.run is None else {'run_id': row.run.run_id, 'state': row.run.state},
        'rows_over_loads': row.chart, 'reports': row.reports,
    }


def create_app() -> FastAPI:
    app = FastAPI(title='data-flow datasets', docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    def refused(request: Request, exc: HTTPException) -> Any:
        """JSON for the API; for a page, what happened and where to sign in."""
        if '/api/' in request.url.path:
            return JSONResponse({'detail': exc.detail}, status_code=exc.status_code, headers=exc.headers)
        page = TEMPLATES.get_template('refused.html').render(
            prefix=PREFIX, status=exc.status_code, detail=exc.detail, login_url=get_auth_manager().get_url_login())
        return HTMLResponse(page, status_code=exc.status_code)

    def datasets(user: BaseUser) -> tuple[list[data.DatasetRow], dict[str, Exception]]:
        found = data.pipelines.get()
        readable = _readable(user)
        specs = [s for name, s in found.datasets.specs.items() if name in readable]
        broken = {name: error for name, error in {**found.datasets.errors, **found.views.errors}.items()
                  if name in readable or name not in found.datasets.specs}
        return data.dataset_rows(specs, _now()), broken

    def dataset(user: BaseUser, pipeline: str) -> data.DatasetPage:
        found = data.pipelines.get()
        spec = found.datasets.specs.get(pipeline)
        if spec is None or pipeline not in _readable(user):
            raise HTTPException(status_code=404, detail=f'No dataset pipeline {pipeline!r} you may read')
        return data.dataset_page(spec, found.views.specs.values(), _now())

    def view_pipelines(user: BaseUser) -> list[data.ViewPipelineRow]:
        found = data.pipelines.get()
        readable = _readable(user)
        return data.view_rows(s for name, s in found.views.specs.items() if name in readable)

    def view_preview(user: BaseUser, view: str) -> dict[str, Any]:
        found = data.pipelines.get()
        spec = data.view_of(view, found.views.specs.values())
        if spec is None or spec.name not in _readable(user):
            raise HTTPException(status_code=404, detail=f'No view {view!r} of a view pipeline you may read')
        columns, rows = data.preview(spec.dataset.target_db, view)
        return {'view': view, 'pipeline': spec.name, 'columns': columns, 'rows': rows}

    @app.get('/datasets', response_class=HTMLResponse)
    def datasets_page(user: Reader) -> HTMLResponse:
        rows, broken = datasets(user)
        return _page('datasets.html', rows=rows, broken=broken, now=_now())

    @app.get('/datasets/{pipeline}', response_class=HTMLResponse)
    def dataset_page(pipeline: str, user: Reader) -> HTMLResponse:
        return _page('dataset.html', page=dataset(user, pipeline))

    @app.get('/views', response_class=HTMLResponse)
    def views_page(user: Reader) -> HTMLResponse:
        return _page('views.html', rows=view_pipelines(user))

    @app.get('/views/{view}', response_class=HTMLResponse)
    def view_page(view: str, user: Reader) -> HTMLResponse:
        return _page('view.html', **view_preview(user, view))

    @app.get('/api/datasets')
    def datasets_api(user: Reader) -> dict[str, Any]:
        rows, broken = datasets(user)
        return {'datasets': [_dataset_json(row) for row in rows],
                'invalid': {name: str(error) for name, error in broken.items()}}

    @app.get('/api/datasets/{pipeline}')
    def dataset_api(pipeline: str, user: Reader) -> dict[str, Any]:
        page = dataset(user, pipeline)
        spec = page.row.spec
        return {
            **_dataset_json(page.row),
            'columns': [{'name': c.name, 'type': c.type.sql, 'source_field': c.source_field,
                         'conversion': None if c.conversion is None else str(c.conversion)} for c in spec.columns],
            'loads': [{'finished_at': load.finished_at.isoformat(), 'rows_before': load.rows_before,
                       'rows_after': load.rows_after, 'lock_ms': load.lock_ms, 'seconds': round(load.seconds, 1),
                       'warnings': load.warnings} for load in page.loads],
            'views': page.views, 'view_pipelines': [v.name for v in page.view_pipelines],
            'preview': {'columns': page.preview[0], 'rows': json.loads(json.dumps(page.preview[1], default=str))},
        }

    @app.get('/api/views')
    def views_api(user: Reader) -> dict[str, Any]:
        return {'view_pipelines': [{
            'pipeline': row.spec.name, 'dataset': row.spec.dataset.table_name,
            'views': [{'name': v.name, 'rows': v.rows, 'sql': v.definition} for v in row.views],
        } for row in view_pipelines(user)]}

    @app.get('/api/views/{view}')
    def view_api(view: str, user: Reader) -> dict[str, Any]:
        found = view_preview(user, view)
        return {**found, 'rows': json.loads(json.dumps(found['rows'], default=str))}

    return app
