"""dataflow.web.headers against a tiny ASGI app: which headers, which policy on which path,
and what it leaves alone. tests/e2e/test_sso.py checks them on the real api-server, and
that the browser meets no violation of the policy there."""

import asyncio
import concurrent.futures

import pytest

from dataflow.web import headers
from dataflow.web.headers import SecurityHeaders


def run(coroutine):
    """Run `coroutine` to its end on an event loop of its own thread: a session that ran the
    browser tests (Playwright's sync API) has a loop running in this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def tiny_app(own_headers=()):
    """An ASGI app answering every request with a small HTML page and `own_headers`."""
    async def app(scope, receive, send):
        await send({'type': 'http.response.start', 'status': 200,
                    'headers': [(b'content-type', b'text/html'), *own_headers]})
        await send({'type': 'http.response.body', 'body': b'<p>hello</p>'})
    return app


def request(app, path, root_path=''):
    """The response headers (lower-case names, each with its list of values) and the body."""
    sent = []

    async def receive():
        return {'type': 'http.request', 'body': b''}

    async def send(message):
        sent.append(message)

    scope = {'type': 'http', 'method': 'GET', 'path': root_path + path, 'root_path': root_path,
             'query_string': b'', 'headers': []}
    run(SecurityHeaders(app)(scope, receive, send))
    start, body = sent
    found = {}
    for name, value in start['headers']:
        found.setdefault(name.decode().lower(), []).append(value.decode())
    return found, body['body']


def directives(policy):
    return {part.split()[0]: part.split()[1:] for part in policy.split(';') if part.strip()}


@pytest.mark.parametrize('path', ['/', '/dags', '/dags/OMISDatasetPipeline/grid', '/dataflow/datasets',
                                  '/plugin/datasets', '/api/v2/dags', '/ui/config', '/authorize', '/docs/x'])
def test_every_response_gets_the_headers_and_the_strict_policy(path):
    found, body = request(tiny_app(), path)
    assert body == b'<p>hello</p>'
    assert found['x-frame-options'] == ['SAMEORIGIN']
    assert found['x-content-type-options'] == ['nosniff']
    assert found['referrer-policy'] == ['same-origin']
    [policy] = found['content-security-policy']
    assert directives(policy) == {
        'default-src': ["'self'"], 'script-src': ["'self'"], 'style-src': ["'self'", "'unsafe-inline'"],
        'img-src': ["'self'", 'data:'], 'worker-src': ["'self'", 'blob:'], 'object-src': ["'none'"],
        'base-uri': ["'self'"], 'form-action': ["'self'"], 'frame-ancestors': ["'self'"],
    }


@pytest.mark.parametrize('path', ['/auth', '/auth/login/', '/auth/users/list/', '/auth/oauth-authorized/oidc'])
def test_fabs_pages_alone_may_run_inline_scripts(path):
    [policy] = request(tiny_app(), path)[0]['content-security-policy']
    found = directives(policy)
    assert found['script-src'] == ["'self'", "'unsafe-inline'"] and found['font-src'] == ["'self'", 'data:']
    assert found['frame-ancestors'] == ["'self'"] and found['object-src'] == ["'none'"]
    assert found['form-action'] == ["'self'"]


@pytest.mark.parametrize('path', ['/docs', '/redoc'])
def test_the_api_reference_may_load_its_code_from_jsdelivr(path):
    found = directives(request(tiny_app(), path)[0]['content-security-policy'][0])
    assert found['script-src'] == ["'self'", "'unsafe-inline'", 'https://cdn.jsdelivr.net']
    assert found['frame-ancestors'] == ["'self'"] and found['object-src'] == ["'none'"]


def test_paths_are_taken_under_the_root_path():
    found, _ = request(tiny_app(), '/auth/login/', root_path='/airflow')
    assert found['content-security-policy'] == [headers.AUTH_POLICY]
    found, _ = request(tiny_app(), '/dags', root_path='/airflow')
    assert found['content-security-policy'] == [headers.POLICY]


def test_a_header_the_app_sets_is_kept_and_not_doubled():
    found, _ = request(tiny_app([(b'X-Frame-Options', b'DENY'), (b'content-security-policy', b"default-src 'none'")]),
                       '/dags')
    assert found['x-frame-options'] == ['DENY']
    assert found['content-security-policy'] == ["default-src 'none'"]
    assert found['referrer-policy'] == ['same-origin']


def test_other_than_http_passes_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope['type'])
        await send({'type': 'lifespan.startup.complete'})

    sent = []

    async def send(message):
        sent.append(message)

    run(SecurityHeaders(app)({'type': 'lifespan'}, None, send))
    assert seen == ['lifespan'] and sent == [{'type': 'lifespan.startup.complete'}]


def test_the_plugin_adds_it_to_every_api_server():
    from dataflow.airflow.ui.plugin import DataflowPlugin

    assert [m['middleware'] for m in DataflowPlugin.fastapi_root_middlewares] == [SecurityHeaders]
