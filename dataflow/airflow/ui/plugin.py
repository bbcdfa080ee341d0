"""The Airflow plugin: the Datasets pages (a FastAPI app at /dataflow) and "Datasets" and
"Dataset views" entries in the UI's Browse menu, which show them inside Airflow's page;
and the security headers of every api-server response (dataflow.web.headers, a root
middleware: this plugin is loaded by every api-server data-flow starts).

Every Airflow process loads plugins (a task's too), but only the api-server serves them:
the app is built on its first request, so nothing else pays for importing it."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from dataflow.airflow.ui import PREFIX
from dataflow.web.headers import SecurityHeaders


class _AppOnFirstRequest:
    """An ASGI app that builds dataflow.airflow.ui.app's on the first request it gets."""

    def __init__(self) -> None:
        self._app: Any = None

    def __repr__(self) -> str:
        return 'dataflow.airflow.ui.app:create_app()'

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from dataflow.airflow.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class DataflowPlugin(AirflowPlugin):
    name = 'dataflow'
    fastapi_apps = [{'app': _AppOnFirstRequest(), 'url_prefix': PREFIX, 'name': 'data-flow datasets'}]
    external_views = [
        {'name': 'Datasets', 'href': f'{PREFIX}/datasets', 'destination': 'nav', 'category': 'browse',
         'url_route': 'datasets'},
        {'name': 'Dataset views', 'href': f'{PREFIX}/views', 'destination': 'nav', 'category': 'browse',
         'url_route': 'dataset-views'},
    ]
    fastapi_root_middlewares = [{'middleware': SecurityHeaders, 'name': 'data-flow security headers'}]
