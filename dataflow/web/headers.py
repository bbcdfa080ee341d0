"""Security headers on every HTTP response of the api-server.

`SecurityHeaders(app)` is an ASGI middleware. To every HTTP response it adds the headers
below, each unless the response already sets it (an app that knows better keeps its own):

- `X-Frame-Options: SAMEORIGIN` and the policy's `frame-ancestors 'self'`: only data-flow's
  own pages may frame its pages (the UI shows the Datasets pages in an iframe), so no
  other site can lay them under a decoy (clickjacking);
- `Content-Security-Policy`: scripts, styles, images, fonts, workers and connections from
  the api-server itself only; no plugins (`object-src 'none'`); no `<base>` elsewhere;
  forms post back to it only. FAB's pages under /auth/ (the login page, Security > Users)
  carry inline scripts, so there, and only there, scripts may be inline (`AUTH_POLICY`);
  the REST API's reference pages (/docs, /redoc) load their code from jsDelivr
  (`DOCS_POLICY`);
- `X-Content-Type-Options: nosniff`: a response is what its Content-Type says;
- `Referrer-Policy: same-origin`: URLs (DAG and run ids, the OAuth callback's) are not
  sent to other sites.

DataflowPlugin (dataflow.airflow.ui.plugin) registers it as a root middleware
(`fastapi_root_middlewares`), so every api-server data-flow starts sends them, in local
and SSO mode, on Airflow's UI and API, FAB's /auth pages and the Datasets pages.
tests/e2e check that the browser meets no violation of the policy on those pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DIRECTIVES = {
    'default-src': "'self'",
    'script-src': "'self'",
    # Airflow's UI (Chakra, emotion) injects <style> elements as it renders, and the
    # Datasets pages carry theirs inline.
    'style-src': "'self' 'unsafe-inline'",
    'img-src': "'self' data:",
    # The UI lays DAG graphs out in a worker made from a Blob of its own script, on every
    # page; its code editor's workers too.
    'worker-src': "'self' blob:",
    'object-src': "'none'",
    'base-uri': "'self'",
    # The sign-in button is a link to the provider, not a form: no form posts elsewhere.
    'form-action': "'self'",
    'frame-ancestors': "'self'",
}


def _policy(directives: dict[str, str]) -> str:
    return '; '.join(f'{name} {value}' for name, value in directives.items())


POLICY = _policy(_DIRECTIVES)
# FAB's pages (the login page, Security > Users...: Airflow's main.html and FAB's own
# templates) run inline <script> blocks without nonces and an icon font from a data: URL.
# Only there: no other part of the api-server needs either.
AUTH_PREFIX = '/auth'
AUTH_POLICY = _policy({**_DIRECTIVES, 'script-src': "'self' 'unsafe-inline'", 'font-src': "'self' data:"})
# The REST API's reference (FastAPI's Swagger UI, which the UI's Docs menu opens, and
# ReDoc) is a page with an inline script that loads its code and styles from jsDelivr,
# ReDoc's fonts from Google and both their icon from fastapi.tiangolo.com (as
# fastapi/openapi/docs.py writes them): allowed on those two paths only, so that Airflow's
# API docs keep working.
DOCS_PATHS = ('/docs', '/redoc')
DOCS_POLICY = _policy({
    **_DIRECTIVES,
    'script-src': "'self' 'unsafe-inline' https://cdn.jsdelivr.net",
    'style-src': "'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com",
    'img-src': "'self' data: https://fastapi.tiangolo.com",
    'font-src': "'self' https://fonts.gstatic.com",
})

HEADERS = {
    'x-frame-options': 'SAMEORIGIN',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
}


def policy_for(path: str) -> str:
    """The Content-Security-Policy of a response to `path` (without the api-server's root path)."""
    if path == AUTH_PREFIX or path.startswith(AUTH_PREFIX + '/'):
        return AUTH_POLICY
    if path in DOCS_PATHS:
        return DOCS_POLICY
    return POLICY


def _app_path(scope: Scope) -> str:
    """The request's path under the api-server's root path (its base URL's path, if any)."""
    path: str = scope.get('path', '')
    root: str = scope.get('root_path', '')
    return path[len(root):] if root and path.startswith(root) else path


class SecurityHeaders:
    """Adds the module's headers to every HTTP response of `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        added = {**HEADERS, 'content-security-policy': policy_for(_app_path(scope))}

        async def send_with_headers(message: Message) -> None:
            if message['type'] == 'http.response.start':
                headers = list(message.get('headers', []))
                present = {name.decode('latin-1').lower() for name, _ in headers}
                headers += [(name.encode('latin-1'), value.encode('latin-1'))
                            for name, value in added.items() if name not in present]
                message['headers'] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
