"""Single sign-on on the real api-server (FAB auth manager), against a real OAuth2/OpenID
Connect provider (django-oauth-toolkit, as Staff SSO is built) on 127.0.0.1, driven by
headless Chromium through Playwright. The stack runs with SSO_SESSION_HOURS=2."""

import base64
import datetime
import json
import re
import secrets
import shutil
import time
import urllib.parse

import msgspec
import psycopg2
import pytest
import requests

from dataflow.airflow.templates import airflow_macros
from dataflow.definitions import templates
from dataflow.definitions.discovery import discover_views
from dataflow.load.views import create_view
from devstack import services
from devstack.airflow_stack import AirflowStack
from devstack.datahub_records import omis_record
from devstack.source_api import DemoSource
from tests.support.browser import explained, new_page, screenshot
from tests.support.omis import omis_spec, order
from tests.support.runs import run_locally
from tests.support.sources import hawk_client
from tests.support.e2e import files_containing
from tests.support.sso.provider_process import SSOUser, StaffSSOProvider

CLIENT_ID = 'data-flow-e2e'
PROXIED_ORIGIN = 'https://data-flow.example'
ALICE = SSOUser('alice', 'alice-' + secrets.token_hex(4), 'alice.smith@digital.trade.gov.uk', 'Alice', 'Smith')
BOSS = SSOUser('boss', 'boss-' + secrets.token_hex(4), 'boss@trade.gov.uk', 'Ann', 'Boss')
MALLORY = SSOUser('mallory', 'mallory-' + secrets.token_hex(4), 'mallory@evil.example', 'Mal', 'Lory')
TRICKSTER = SSOUser('trick', 'trick-' + secrets.token_hex(4), 'someone@trade.gov.uk@evil.example', 'Tr', 'Ick')
TAMPERER = SSOUser('tam', 'tam-' + secrets.token_hex(4), 'tam.per@trade.gov.uk', 'Tam', 'Per')
# An allowed domain, but the provider has not verified the address (email_verified: false).
UNVERIFIED = SSOUser('unver', 'unver-' + secrets.token_hex(4), 'un.verified@trade.gov.uk', 'Un', 'Verified')
LEAVER = SSOUser('leaver', 'leaver-' + secrets.token_hex(4), 'lea.ver@trade.gov.uk', 'Lea', 'Ver')
USERS = (ALICE, BOSS, MALLORY, TRICKSTER, TAMPERER, UNVERIFIED, LEAVER)
REFUSED = (MALLORY, TRICKSTER, UNVERIFIED)
SESSION_HOURS = 2


class SSOStack:
    def __init__(self, airflow, provider, metadata_dsn, client_secret, datasets_dsn):
        self.airflow, self.provider, self.metadata_dsn = airflow, provider, metadata_dsn
        self.datasets_dsn = datasets_dsn
        self.client_secret = client_secret
        self.base_url = airflow.base_url
        self.mode = 'authbroker'

    def query(self, statement, *args):
        conn = psycopg2.connect(self.metadata_dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement, args)
                return cursor.fetchall() if cursor.description else None
        finally:
            conn.close()

    def users(self):
        """FAB's users: {username: [role names]}."""
        found = {}
        for username, role in self.query('SELECT u.username, r.name FROM ab_user u LEFT JOIN ab_user_role ur '
                                         'ON ur.user_id = u.id LEFT JOIN ab_role r ON r.id = ur.role_id'):
            found.setdefault(username, set()).add(role)
        return found

    def age_session(self, cookie, seconds):
        """Move the login time of the FAB session behind the `session` cookie `seconds` back.
        FAB keeps sessions in the metadata database (msgpack), stamped at login when
        [fab] session_max_lifetime_minutes is on; the cookie holds the signed session id."""
        session_id = cookie.rsplit('.', 1)[0]
        [(data,)] = self.query('SELECT data FROM session WHERE session_id = %s', session_id)
        stored = msgspec.msgpack.decode(bytes(data))
        assert '_login_at' in stored, f'the session is not stamped with its login time: {sorted(stored)}'
        stored['_login_at'] -= seconds
        self.query('UPDATE session SET data = %s WHERE session_id = %s', msgspec.msgpack.encode(stored), session_id)

    def use_provider(self, **env):
        """Restart the api-server with other SSO settings."""
        self.airflow.stop_component('api-server')
        self.airflow.start_component('api-server', env=env)
        self.airflow.api.wait_healthy(components=('metadatabase', 'dag_processor'), check=self.airflow._check_alive)
        self.mode = env.get('SSO_PROVIDER', 'authbroker')

    def use_oidc(self):
        if self.mode != 'oidc':
            self.use_provider(SSO_PROVIDER='oidc')


@pytest.fixture(scope='module')
def sso(pg_admin_dsn, tmp_path_factory):
    if not shutil.which('chromium'):
        pytest.fail('Chromium is not installed: bin/test installs it (apt-get install chromium)')
    port, secret = services.free_port(), secrets.token_urlsafe(24)
    base = f'http://127.0.0.1:{port}'
    callbacks = [f'{origin}/auth/oauth-authorized/{name}' for origin in (base, PROXIED_ORIGIN)
                 for name in ('authbroker', 'oidc')]
    with StaffSSOProvider(services.free_port(), CLIENT_ID, secret, callbacks, USERS, tmp_path_factory.mktemp('sso'),
                          unverified_emails=[UNVERIFIED.email]) as provider, \
            services.scratch_database(pg_admin_dsn, 'dataflow_e2e_sso') as metadata_dsn, \
            services.scratch_database(pg_admin_dsn, 'dataflow_e2e_sso_data') as datasets_dsn:
        airflow = AirflowStack(
            str(tmp_path_factory.mktemp('airflow-sso')), services.url_for(metadata_dsn), 'redis://127.0.0.1:1/0',
            port, components=('api-server', 'dag-processor'), auth='sso',
            env={
                'AUTHBROKER_URL': provider.url,
                'AUTHBROKER_CLIENT_ID': CLIENT_ID,
                'AUTHBROKER_CLIENT_SECRET': secret,
                'AUTHBROKER_ALLOWED_DOMAINS': 'digital.trade.gov.uk,trade.gov.uk',
                'SSO_ADMIN_EMAILS': BOSS.email,
                # As deployed behind the PaaS router, which sets X-Forwarded-Proto/Host.
                'AIRFLOW__FAB__ENABLE_PROXY_FIX': 'True',
                'OIDC_DISCOVERY_URL': f'{provider.url}/o/.well-known/openid-configuration',
                'OIDC_CLIENT_ID': CLIENT_ID,
                'OIDC_CLIENT_SECRET': secret,
                'AIRFLOW_CONN_DATASETS_DB': services.url_for(datasets_dsn),
                'SSO_SESSION_HOURS': str(SESSION_HOURS),
            },
        )
        with airflow:
            yield SSOStack(airflow, provider, metadata_dsn, secret, datasets_dsn)


def sign_in(page, sso, user, path='/dags'):
    """Open the UI, follow it to the provider's login form, and sign in as `user`."""
    page.goto(sso.base_url + path)
    page.wait_for_url(f'{sso.base_url}/auth/login/**')
    page.get_by_text('Sign In with').click()  # the provider's button
    page.wait_for_url(f'{sso.provider.url}/accounts/login/**')
    page.fill('input[name=username]', user.username)
    page.fill('input[name=password]', user.password)
    page.click('#login-submit')


def api_status(page, sso, path='/api/v2/dags'):
    """The status of an API call made with the browser's cookies."""
    return page.request.get(sso.base_url + path).status


def jwt_claims(token):
    """The claims of a JWT, unverified (the api-server verifies them; the test reads them)."""
    payload = token.split('.')[1]
    return json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))


def test_unauthenticated_api_answers_401(sso):
    assert requests.get(f'{sso.base_url}/api/v2/dags', timeout=30).status_code == 401
    assert requests.get(f'{sso.base_url}/api/v2/version', timeout=30).status_code == 200


def test_an_allowed_user_signs_in_and_sees_the_dags(sso, browser):
    with new_page(browser) as page:
        sign_in(page, sso, ALICE)
        page.wait_for_url(f'{sso.base_url}/dags**')
        page.get_by_text('OMISDatasetPipeline').first.wait_for(timeout=60_000)
        assert api_status(page, sso) == 200
        cookies = {c['name']: c for c in page.context.cookies(sso.base_url)}
        session = cookies['session']
        assert session['httpOnly'] and session['secure'] and session['sameSite'] == 'Lax'
    assert sso.users()[ALICE.email] == {'Viewer'}


def test_an_admin_email_gets_the_admin_role(sso, browser):
    with new_page(browser) as page:
        sign_in(page, sso, BOSS)
        page.wait_for_url(f'{sso.base_url}/dags**')
    assert sso.users()[BOSS.email] == {'Admin', 'Viewer'}


@pytest.mark.parametrize('user', [MALLORY, TRICKSTER], ids=['other-domain', 'trade-gov-uk-before-last-at'])
def test_other_domains_are_refused_and_no_user_is_created(sso, browser, user):
    with new_page(browser) as page:
        sign_in(page, sso, user)
        page.wait_for_url(f'{sso.base_url}/auth/oauth-authorized/authbroker**')
        assert f'{user.email} is not allowed to use data-flow' in page.inner_text('#not-allowed')
        assert api_status(page, sso) == 401
    assert user.email not in sso.users()


def test_a_tampered_state_is_refused(sso, browser):
    with new_page(browser) as page:
        def forge_state(route):
            # The callback is reached by redirects, which Playwright does not intercept:
            # forge the state on its way out instead; the provider sends it back.
            response = route.fetch(max_redirects=0)
            headers = dict(response.headers)
            location = urllib.parse.urlsplit(headers['location'])
            query = urllib.parse.parse_qs(location.query)
            forged = query['state'][0][:-4] + ('AAAA' if not query['state'][0].endswith('AAAA') else 'BBBB')
            query['state'] = [forged]
            headers['location'] = location._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
            route.fulfill(response=response, headers=headers)

        page.route(lambda url: urllib.parse.urlsplit(url).path == '/auth/login/authbroker', forge_state)
        sign_in(page, sso, TAMPERER)
        page.wait_for_url(f'{sso.base_url}/auth/login/**')
        assert api_status(page, sso) == 401
    assert TAMPERER.email not in sso.users()


def test_logout_ends_the_session(sso, browser):
    with new_page(browser) as page:
        sign_in(page, sso, ALICE)
        page.wait_for_url(f'{sso.base_url}/dags**')
        assert api_status(page, sso) == 200
        token = {c['name']: c['value'] for c in page.context.cookies(sso.base_url)}['_token']
        page.goto(f'{sso.base_url}/api/v2/auth/logout')  # the UI's "Log out"
        page.wait_for_url(f'{sso.base_url}/auth/login/**')
        assert api_status(page, sso) == 401
    # The token the browser held is revoked too, not just forgotten by the browser.
    replayed = requests.get(f'{sso.base_url}/api/v2/dags', headers={'Authorization': f'Bearer {token}'}, timeout=30)
    assert (replayed.status_code, replayed.json()) == (403, {'detail': 'Invalid JWT token'})


def test_the_redirect_uri_follows_the_router(sso):
    response = requests.get(f'{sso.base_url}/auth/login/authbroker', allow_redirects=False, timeout=30,
                            headers={'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'data-flow.example'})
    assert response.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers['Location']).query)
    assert query['redirect_uri'] == [f'{PROXIED_ORIGIN}/auth/oauth-authorized/authbroker']
    assert query['scope'] == ['read write'] and query['client_id'] == [CLIENT_ID]


def test_a_sign_in_lasts_sso_session_hours_however_active(sso, browser):
    limit = SESSION_HOURS * 3600
    with new_page(browser) as page:
        sign_in(page, sso, ALICE)
        page.wait_for_url(f'{sso.base_url}/dags**')
        signed_in = time.time()
        cookies = {c['name']: c for c in page.context.cookies(sso.base_url)}
        # FAB's session cookie: SSO_SESSION_HOURS from the last request, not FAB's 30 days.
        assert signed_in + limit - 300 < cookies['session']['expires'] <= signed_in + limit + 5
        # The API token the UI holds: no longer than that either (Airflow's default is 24 h).
        claims = jwt_claims(cookies['_token']['value'])
        assert limit - 300 < claims['exp'] - claims['iat'] <= limit
        assert api_status(page, sso) == 200

        # However active the user, the session ends SSO_SESSION_HOURS after login ([fab]
        # session_max_lifetime_minutes): with its login moved that far back and the API
        # token gone (as when it expires), the UI's way back through FAB ends at the login
        # page instead of handing out a new token.
        page.goto('about:blank')  # nothing of the UI's writes the session meanwhile
        sso.age_session(cookies['session']['value'], limit + 60)
        page.context.clear_cookies(name='_token')
        page.goto(f'{sso.base_url}/dags')
        page.wait_for_url(f'{sso.base_url}/auth/login/**')
        page.get_by_text('Sign In with').wait_for()
        assert api_status(page, sso) == 401
        assert '_token' not in {c['name'] for c in page.context.cookies(sso.base_url)}


def test_deactivating_a_user_in_airflow_cuts_them_off_at_once(sso, browser):
    with new_page(browser) as leaver, new_page(browser) as admin:
        sign_in(leaver, sso, LEAVER)
        leaver.wait_for_url(f'{sso.base_url}/dags**')
        assert api_status(leaver, sso) == 200
        # Security > Users > edit: untick "Is Active?" and save, as an Admin does.
        sign_in(admin, sso, BOSS)
        admin.wait_for_url(f'{sso.base_url}/dags**')
        [(user_id,)] = sso.query('SELECT id FROM ab_user WHERE username = %s', LEAVER.email)
        admin.goto(f'{sso.base_url}/auth/users/edit/{user_id}')
        admin.uncheck('input[name=active]')
        admin.get_by_role('button', name='Save').click()
        deadline = time.monotonic() + 30
        while sso.query('SELECT active FROM ab_user WHERE id = %s', user_id) != [(False,)]:
            assert time.monotonic() < deadline, 'the user is still active after saving the form'
            time.sleep(0.5)

        # Their API token is refused once FAB's user cache ([fab] cache_ttl, 30 s) lets go.
        deadline = time.monotonic() + 60
        while (status := api_status(leaver, sso)) == 200 and time.monotonic() < deadline:
            time.sleep(2)
        assert status in (401, 403)
        # ... and signing in again through SSO does not let them back in.
        leaver.context.clear_cookies()
        sign_in(leaver, sso, LEAVER)
        leaver.wait_for_url(f'{sso.base_url}/auth/login/**')
        assert api_status(leaver, sso) == 401


def test_every_response_carries_the_security_headers(sso, browser):
    def check(path, headers):
        assert headers['x-frame-options'] == 'SAMEORIGIN', path
        assert headers['x-content-type-options'] == 'nosniff', path
        assert headers['referrer-policy'] == 'same-origin', path
        policy = headers['content-security-policy']
        assert "frame-ancestors 'self'" in policy and "default-src 'self'" in policy, path
        assert "object-src 'none'" in policy, path
        script_src = re.search(r'script-src ([^;]*)', policy).group(1)
        assert ("'unsafe-inline'" in script_src) == path.startswith(('/auth/', '/docs')), (path, script_src)

    paths = ('/', '/dags', '/auth/login/', '/api/v2/version', '/api/v2/dags', '/dataflow/datasets',
             '/dataflow/api/datasets', '/docs', '/auth/oauth-authorized/authbroker', '/no-such-page')
    for path in paths:  # signed out: the answers are 200, 302, 401, 404
        check(path, {k.lower(): v for k, v in requests.get(sso.base_url + path, allow_redirects=False,
                                                            timeout=30).headers.items()})
    # Signed in as an Admin, every page goes through the browser: new_page fails the test
    # on any violation of the policy, in a page or in the frame of the Datasets page.
    with new_page(browser) as page, explained(page, 'sso-headers'):
        sign_in(page, sso, BOSS)
        page.wait_for_url(f'{sso.base_url}/dags**')
        page.get_by_text('OMISDatasetPipeline').first.wait_for(timeout=60_000)
        for path in paths[3:7]:
            check(path, page.request.get(sso.base_url + path).headers)
        page.goto(f'{sso.base_url}/dags/OMISDatasetPipeline')
        page.get_by_text('check-if-table-exists').first.wait_for(timeout=60_000)
        page.get_by_role('button', name='Trigger').first.click()
        page.get_by_text('Advanced Options').first.click()  # the code editor (Monaco) and its workers
        page.locator('.monaco-editor').first.wait_for(timeout=60_000)
        page.goto(f'{sso.base_url}/plugin/datasets')
        page.frame_locator('iframe').locator('#datasets').wait_for(timeout=60_000)
        page.goto(f'{sso.base_url}/auth/users/list/')  # Security > Users: FAB's own page
        page.get_by_text(BOSS.email).first.wait_for()
        page.goto(f'{sso.base_url}/docs')  # the REST API reference (its code is on jsDelivr)
        page.wait_for_timeout(2000)  # console messages arrive after the load


def test_openid_connect_mode_signs_in_with_the_same_rules(sso, browser):
    sso.use_oidc()
    with new_page(browser) as page:
        sign_in(page, sso, ALICE)
        page.wait_for_url(f'{sso.base_url}/dags**')
        page.get_by_text('OMISDatasetPipeline').first.wait_for(timeout=60_000)
    with new_page(browser) as page:
        sign_in(page, sso, MALLORY)
        page.wait_for_url(f'{sso.base_url}/auth/oauth-authorized/oidc**')
        assert 'is not allowed to use data-flow' in page.inner_text('#not-allowed')
    assert MALLORY.email not in sso.users()


def test_openid_connect_mode_refuses_an_email_the_provider_has_not_verified(sso, browser):
    sso.use_oidc()
    with new_page(browser) as page:
        sign_in(page, sso, UNVERIFIED)
        page.wait_for_url(f'{sso.base_url}/auth/oauth-authorized/oidc**')
        assert page.inner_text('#not-allowed').startswith(f'{UNVERIFIED.email} is not allowed to use data-flow')
        assert page.inner_text('#reason') == 'email address not verified by the provider'
        assert api_status(page, sso) == 401
    assert UNVERIFIED.email not in sso.users()


def test_a_viewer_browses_the_datasets_and_a_view(sso, browser):
    # Loaded by the engine the DAG runs (this stack runs no scheduler), then browsed.
    with DemoSource('sso-hawk-id', 'sso-hawk-key-0123456789', page_size=100) as source:
        source.omis.put(*(omis_record(i) for i in range(140)),
                        *(order(i, 'complete', f'2017-11-{1 + i % 28:02d}T12:00:00Z') for i in range(200, 207)))
        spec = omis_spec()
        run_locally(spec, hawk_client('sso-hawk-id', 'sso-hawk-key-0123456789', base_url=source.url),
                    sso.datasets_dsn, 'sso-load')
    view_spec = discover_views().specs['CompletedOMISOrderViewPipeline']
    november = datetime.datetime(2017, 11, 1, tzinfo=datetime.timezone.utc)
    conn = psycopg2.connect(sso.datasets_dsn)
    view = templates.view_name_for(view_spec, november)
    create_view(conn, view_spec, view, templates.render_where_clause(
        view_spec, templates.template_context(november, airflow_macros())))
    conn.close()
    for path in ('/dataflow/datasets', '/dataflow/views', '/dataflow/datasets/OMISDatasetPipeline',
                 f'/dataflow/views/{view}', '/dataflow/api/datasets', '/dataflow/api/datasets/OMISDatasetPipeline',
                 '/dataflow/api/views', f'/dataflow/api/views/{view}'):
        assert requests.get(sso.base_url + path, timeout=30).status_code == 401, path
        forged = requests.get(sso.base_url + path, cookies={'_token': 'not.a.token'}, timeout=30)
        assert forged.status_code in (401, 403), path
        assert view not in forged.text and 'OMISDatasetPipeline' not in forged.text.replace(path, '')
    assert 'Sign in' in requests.get(sso.base_url + '/dataflow/datasets', timeout=30).text
    # Nothing there writes: no method but GET is routed.
    assert requests.post(sso.base_url + '/dataflow/api/datasets', timeout=30).status_code in (401, 405)

    with new_page(browser) as page, explained(page, 'sso-viewer'):
        sign_in(page, sso, ALICE, path='/plugin/datasets')
        page.wait_for_url(f'{sso.base_url}/plugin/datasets**')
        frame = page.frame_locator('iframe')
        row = frame.locator('#datasets tr[data-pipeline=OMISDatasetPipeline]')
        row.locator('td.rows').wait_for(timeout=60_000)
        assert row.locator('td.rows').inner_text() == '147'
        assert re.fullmatch(r'(just now|\d+ minutes? ago)', row.locator('td.freshness').inner_text().strip())
        screenshot(page, 'sso-viewer-datasets')
        assert page.request.get(sso.base_url + '/dataflow/api/datasets').status == 200
        # The Browse menu has the entry for a Viewer too (the UI lists plugins' pages only to
        # roles that may read plugins: dataflow.web.sso adds that to every role).
        page.goto(f'{sso.base_url}/dags')
        page.get_by_role('button', name='Browse').click()
        page.get_by_role('menuitem', name='Datasets', exact=True).click()
        page.wait_for_url(f'{sso.base_url}/plugin/datasets**')
        page.goto(f'{sso.base_url}/plugin/dataset-views')
        frame = page.frame_locator('iframe')
        frame.get_by_role('link', name=view).click()
        frame.locator('#preview').wait_for(timeout=60_000)
        assert frame.locator('#preview tbody tr').count() == 7
        screenshot(page, 'sso-viewer-view-preview')
    assert sso.users()[ALICE.email] == {'Viewer'}


def test_no_log_holds_the_client_secret_or_a_password(sso):
    # Runs after the sign-ins above: every log the api-server and the provider wrote.
    secrets_ = (sso.client_secret, *(user.password for user in USERS))
    leaks, read = files_containing(sso.airflow.home, *secrets_)
    with open(sso.provider.log_path, 'rb') as log:
        provider_log = log.read()
    assert read > 0 and leaks == []
    assert provider_log and not [s for s in secrets_ if s.encode() in provider_log]

    # Nor the email of anyone refused (shown to them, never logged): no file under
    # AIRFLOW_HOME (the api-server's log among them), no row of Airflow's audit log. And the
    # access log keeps the OAuth callback's path but not its code (Airflow's masker, told
    # that parameters named *code* are sensitive: '***', URL-encoded). Every check is made
    # and every failure named.
    problems = []
    refused = [user.email for user in REFUSED]
    problems += [f'a refused email in {leak}' for leak in files_containing(sso.airflow.home, *refused)[0]]
    audit = sso.query('SELECT * FROM log')
    problems += [f'a refused email in the audit log: {row}' for row in audit
                 if any(email in str(row) for email in refused)]
    with open(sso.airflow.log_path('api-server'), errors='replace') as log:
        api_server_log = log.read()
    for logged in ("SSO login refused (email domain not allowed): email domain 'evil.example'",
                   "SSO login refused (email address not verified by the provider): email domain 'trade.gov.uk'"):
        if logged not in api_server_log:
            problems.append(f'not logged: {logged}')
    callbacks = [line for line in api_server_log.splitlines() if 'path=/auth/oauth-authorized/' in line]
    codes = {match for line in callbacks for match in re.findall(r'[?&\']code=([^&\'\s]*)', line)}
    if len(callbacks) < 8 or codes != {'%2A%2A%2A'}:
        # Not the codes themselves: a test names a leak without repeating it.
        problems.append(f'{len(callbacks)} callbacks in the access log, {len(codes - {"%2A%2A%2A"})} codes unmasked')
    assert audit and problems == []
