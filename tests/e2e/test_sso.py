"""Single sign-on on the real api-server (FAB auth manager), against a real OAuth2/OpenID
Connect provider (django-oauth-toolkit, as Staff SSO is built) on 127.0.0.1, driven by
headless Chromium through Playwright."""

import contextlib
import secrets
import shutil
import urllib.parse

import psycopg2
import pytest
import requests
from playwright.sync_api import sync_playwright

from devstack import services
from devstack.airflow_stack import AirflowStack
from tests.support.e2e import files_containing
from tests.support.sso.provider_process import SSOUser, StaffSSOProvider

CLIENT_ID = 'data-flow-e2e'
PROXIED_ORIGIN = 'https://data-flow.example'
ALICE = SSOUser('alice', 'alice-' + secrets.token_hex(4), 'alice.smith@digital.trade.gov.uk', 'Alice', 'Smith')
BOSS = SSOUser('boss', 'boss-' + secrets.token_hex(4), 'boss@trade.gov.uk', 'Ann', 'Boss')
MALLORY = SSOUser('mallory', 'mallory-' + secrets.token_hex(4), 'mallory@evil.example', 'Mal', 'Lory')
TRICKSTER = SSOUser('trick', 'trick-' + secrets.token_hex(4), 'someone@trade.gov.uk@evil.example', 'Tr', 'Ick')
TAMPERER = SSOUser('tam', 'tam-' + secrets.token_hex(4), 'tam.per@trade.gov.uk', 'Tam', 'Per')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']


class SSOStack:
    def __init__(self, airflow, provider, metadata_dsn, client_secret):
        self.airflow, self.provider, self.metadata_dsn = airflow, provider, metadata_dsn
        self.client_secret = client_secret
        self.base_url = airflow.base_url

    def users(self):
        """FAB's users: {username: [role names]}."""
        conn = psycopg2.connect(self.metadata_dsn)
        with conn.cursor() as cursor:
            cursor.execute('SELECT u.username, r.name FROM ab_user u LEFT JOIN ab_user_role ur ON ur.user_id = u.id '
                           'LEFT JOIN ab_role r ON r.id = ur.role_id')
            rows = cursor.fetchall()
        conn.close()
        found = {}
        for username, role in rows:
            found.setdefault(username, set()).add(role)
        return found

    def use_provider(self, **env):
        """Restart the api-server with other SSO settings."""
        self.airflow.stop_component('api-server')
        self.airflow.start_component('api-server', env=env)
        self.airflow.api.wait_healthy(components=('metadatabase', 'dag_processor'), check=self.airflow._check_alive)


@pytest.fixture(scope='module')
def sso(pg_admin_dsn, tmp_path_factory):
    if not shutil.which('chromium'):
        pytest.fail('Chromium is not installed: bin/test installs it (apt-get install chromium)')
    port, secret = services.free_port(), secrets.token_urlsafe(24)
    base = f'http://127.0.0.1:{port}'
    callbacks = [f'{origin}/auth/oauth-authorized/{name}' for origin in (base, PROXIED_ORIGIN)
                 for name in ('authbroker', 'oidc')]
    with StaffSSOProvider(services.free_port(), CLIENT_ID, secret, callbacks,
                          [ALICE, BOSS, MALLORY, TRICKSTER, TAMPERER], tmp_path_factory.mktemp('sso')) as provider, \
            services.scratch_database(pg_admin_dsn, 'dataflow_e2e_sso') as metadata_dsn:
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
            },
        )
        with airflow:
            yield SSOStack(airflow, provider, metadata_dsn, secret)


@pytest.fixture(scope='module')
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which('chromium'), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def new_page(browser):
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


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


def test_openid_connect_mode_signs_in_with_the_same_rules(sso, browser):
    sso.use_provider(SSO_PROVIDER='oidc')
    with new_page(browser) as page:
        sign_in(page, sso, ALICE)
        page.wait_for_url(f'{sso.base_url}/dags**')
        page.get_by_text('OMISDatasetPipeline').first.wait_for(timeout=60_000)
    with new_page(browser) as page:
        sign_in(page, sso, MALLORY)
        page.wait_for_url(f'{sso.base_url}/auth/oauth-authorized/oidc**')
        assert 'is not allowed to use data-flow' in page.inner_text('#not-allowed')
    assert MALLORY.email not in sso.users()


def test_no_log_holds_the_client_secret_or_a_password(sso):
    # Runs after the sign-ins above: every log the api-server and the provider wrote.
    secrets_ = (sso.client_secret, *(user.password for user in (ALICE, BOSS, MALLORY, TRICKSTER, TAMPERER)))
    leaks, read = files_containing(sso.airflow.home, *secrets_)
    with open(sso.provider.log_path, 'rb') as log:
        provider_log = log.read()
    assert read > 0 and leaks == []
    assert provider_log and not [s for s in secrets_ if s.encode() in provider_log]
