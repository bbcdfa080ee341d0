"""The Staff SSO stand-in, driven with plain HTTP the way a relying party and a browser would."""

import base64
import hashlib
import re
import secrets
import warnings
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from tests.support.sso.provider import email_user_id, user_id
from tests.support.sso.provider_process import SSOUser, StaffSSOProvider, free_port

from authlib.deprecate import AuthlibDeprecationWarning

with warnings.catch_warnings():
    # authlib 1.6+ points at joserfc; authlib.jose still works until authlib 2. Imported
    # first because importing authlib.deprecate installs an 'always' filter of its own.
    warnings.simplefilter('ignore', AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, jwt

CLIENT_ID = 'data-flow-test-client'
CLIENT_SECRET = 'test-client-secret-7c1e9b'
ALICE = SSOUser('alice', 'alice-pass:with-colon', 'alice.smith@example.gov.uk', 'Alice', 'Smith')
BOB = SSOUser('bob', 'bob-pass', 'bob.jones@example.gov.uk', 'Bob', 'Jones')


@pytest.fixture(scope='module')
def redirect_uri():
    # Nothing listens here: the tests read the code off the redirect, never follow it.
    return f'http://127.0.0.1:{free_port()}/auth/oauth-authorized/authbroker'


@pytest.fixture(scope='module')
def sso(tmp_path_factory, redirect_uri):
    with StaffSSOProvider(free_port(), CLIENT_ID, CLIENT_SECRET, [redirect_uri], [ALICE, BOB],
                          tmp_path_factory.mktemp('sso'), unverified_emails=[BOB.email.upper()]) as provider:
        yield provider


def browser():
    session = requests.Session()
    # Straight to 127.0.0.1, whatever proxy the environment names.
    session.trust_env = False
    return session


def log_in(session, sso, user, next_url=None):
    """Sign in through the login form; the response to the form's POST."""
    login_url = sso.login_url + (f'?{urlencode({"next": next_url})}' if next_url else '')
    page = session.get(login_url)
    assert page.status_code == 200
    assert 'id="login-submit"' in page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    form = {'csrfmiddlewaretoken': csrf, 'username': user.username, 'password': user.password}
    if next_url:
        form['next'] = next_url
    return session.post(sso.login_url, data=form, allow_redirects=False)


def authorization_code(session, sso, user, redirect_uri, scope='read write', **extra):
    """The code and state the provider sends to redirect_uri, after logging `user` in."""
    state = secrets.token_urlsafe(16)
    query = {'response_type': 'code', 'client_id': CLIENT_ID, 'redirect_uri': redirect_uri,
             'state': state, 'scope': scope, **extra}
    response = session.get(sso.authorize_url, params=query, allow_redirects=False)
    # Not signed in: to the login page, which sends the browser back to the same request.
    assert response.status_code == 302
    login_location = urljoin(sso.url, response.headers['Location'])
    assert login_location.startswith(sso.login_url)
    next_url = parse_qs(urlsplit(login_location).query)['next'][0]
    assert next_url.startswith('/o/authorize/')

    response = log_in(session, sso, user, next_url)
    assert response.status_code == 302
    assert response.headers['Location'] == next_url
    response = session.get(urljoin(sso.url, next_url), allow_redirects=False)
    assert response.status_code == 302
    location = response.headers['Location']
    assert location.split('?')[0] == redirect_uri
    params = parse_qs(urlsplit(location).query)
    assert params['state'] == [state]
    return params['code'][0]


def exchange(code, sso, redirect_uri, secret=CLIENT_SECRET, basic_auth=True, **extra):
    data = {'grant_type': 'authorization_code', 'code': code, 'redirect_uri': redirect_uri, **extra}
    if basic_auth:
        auth = (CLIENT_ID, secret)
    else:
        auth = None
        data.update(client_id=CLIENT_ID, client_secret=secret)
    return browser().post(sso.token_url, data=data, auth=auth)


def me(sso, access_token):
    return browser().get(sso.me_url, headers={'Authorization': f'Bearer {access_token}'})


def test_authorization_code_flow_gives_the_staff_sso_profile(sso, redirect_uri):
    code = authorization_code(browser(), sso, ALICE, redirect_uri)

    response = exchange(code, sso, redirect_uri)
    assert response.status_code == 200, response.text
    token = response.json()
    assert token['token_type'] == 'Bearer'
    assert set(token['scope'].split()) == {'read', 'write'}
    assert 'id_token' not in token

    response = me(sso, token['access_token'])
    assert response.status_code == 200
    assert response.json() == {
        'email': ALICE.email,
        'user_id': user_id('alice'),
        'email_user_id': email_user_id('alice', 'Alice', 'Smith'),
        'first_name': 'Alice',
        'last_name': 'Smith',
        'related_emails': [],
        'contact_email': ALICE.email,
        'groups': [],
        'permitted_applications': [
            {'key': 'data-flow', 'url': f'{redirect_uri.split("/auth/")[0]}/', 'name': 'data-flow'}],
        'access_profiles': [],
    }
    assert re.fullmatch(r'alice\.smith-[0-9a-f]{8}@id\.trade\.gov\.uk', response.json()['email_user_id'])

    # A code is good for one exchange only.
    assert exchange(code, sso, redirect_uri).status_code == 400


def test_profile_is_the_signed_in_users(sso, redirect_uri):
    code = authorization_code(browser(), sso, BOB, redirect_uri)
    token = exchange(code, sso, redirect_uri, basic_auth=False).json()
    profile = me(sso, token['access_token']).json()
    assert profile['email'] == BOB.email
    assert profile['user_id'] == user_id('bob') != user_id('alice')


def test_pkce_is_checked_when_the_client_sends_it(sso, redirect_uri):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b'=').decode()
    code = authorization_code(browser(), sso, ALICE, redirect_uri,
                              code_challenge=challenge, code_challenge_method='S256')

    response = exchange(code, sso, redirect_uri, code_verifier='not-' + verifier)
    assert response.status_code == 400
    assert response.json()['error'] == 'invalid_grant'
    response = exchange(code, sso, redirect_uri, code_verifier=verifier)
    assert response.status_code == 200, response.text


def test_wrong_client_secret_is_refused(sso, redirect_uri):
    code = authorization_code(browser(), sso, ALICE, redirect_uri)

    for basic_auth in (True, False):
        response = exchange(code, sso, redirect_uri, secret='wrong-' + CLIENT_SECRET, basic_auth=basic_auth)
        assert response.status_code == 401
        assert response.json()['error'] == 'invalid_client'
        assert 'access_token' not in response.json()

    # The secret alone was wrong: the code is still good for the real client.
    assert exchange(code, sso, redirect_uri).status_code == 200


def test_unregistered_redirect_uri_is_refused(sso, redirect_uri):
    session = browser()
    assert log_in(session, sso, ALICE).status_code == 302
    registered = urlsplit(redirect_uri)
    unregistered = [
        redirect_uri.replace('/authbroker', '/elsewhere'),
        redirect_uri.replace('127.0.0.1', 'localhost'),
        f'http://evil.example.com:{registered.port}{registered.path}',
        redirect_uri + '?extra=1',
    ]
    for uri in unregistered:
        response = session.get(sso.authorize_url, allow_redirects=False, params={
            'response_type': 'code', 'client_id': CLIENT_ID, 'redirect_uri': uri,
            'state': 'x', 'scope': 'read write'})
        assert response.status_code == 400, uri
        assert 'Location' not in response.headers
        assert 'invalid_request' in response.text or 'Mismatching redirect URI' in response.text

    # DOT follows RFC 8252 §7.3: for an http://127.0.0.1 redirect URI any port is allowed.
    other_port = redirect_uri.replace(f':{registered.port}/', f':{free_port()}/')
    response = session.get(sso.authorize_url, allow_redirects=False, params={
        'response_type': 'code', 'client_id': CLIENT_ID, 'redirect_uri': other_port,
        'state': 'x', 'scope': 'read write'})
    assert response.status_code == 302
    assert response.headers['Location'].startswith(other_port + '?')


def test_unknown_client_is_refused(sso, redirect_uri):
    session = browser()
    log_in(session, sso, ALICE)
    response = session.get(sso.authorize_url, allow_redirects=False, params={
        'response_type': 'code', 'client_id': 'someone-else', 'redirect_uri': redirect_uri,
        'state': 'x', 'scope': 'read write'})
    assert response.status_code == 400
    assert 'Location' not in response.headers


def test_wrong_password_is_refused(sso):
    session = browser()
    response = log_in(session, sso, ALICE._replace(password='not-the-password'))
    assert response.status_code == 200
    assert 'id="login-error"' in response.text
    # Still not signed in.
    response = session.get(sso.url + '/')
    assert 'Signed in as nobody' in response.text


def test_user_me_needs_a_valid_token(sso, redirect_uri):
    response = browser().get(sso.me_url)
    assert response.status_code == 401
    assert response.headers['WWW-Authenticate'].startswith('Bearer')

    assert me(sso, 'not-a-token').status_code == 401

    # Revoked, a good token stops working.
    code = authorization_code(browser(), sso, ALICE, redirect_uri)
    access_token = exchange(code, sso, redirect_uri).json()['access_token']
    assert me(sso, access_token).status_code == 200
    response = browser().post(sso.revoke_url, data={'token': access_token}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200
    assert me(sso, access_token).status_code == 401


def test_openid_connect(sso, redirect_uri):
    discovery = browser().get(sso.discovery_url)
    assert discovery.status_code == 200
    config = discovery.json()
    assert config['issuer'] == f'{sso.url}/o'
    assert config['authorization_endpoint'] == sso.authorize_url
    assert config['token_endpoint'] == sso.token_url
    assert config['userinfo_endpoint'] == sso.userinfo_url
    assert config['jwks_uri'] == sso.jwks_url
    assert {'openid', 'email', 'profile', 'read', 'write'} <= set(config['scopes_supported'])
    assert 'RS256' in config['id_token_signing_alg_values_supported']
    assert {'sub', 'email', 'email_verified', 'given_name', 'family_name', 'name'} <= set(config['claims_supported'])

    jwks = browser().get(config['jwks_uri'])
    assert jwks.status_code == 200
    keys = jwks.json()['keys']
    assert len(keys) == 1
    assert keys[0]['kty'] == 'RSA' and keys[0]['kid']

    nonce = secrets.token_urlsafe(16)
    code = authorization_code(browser(), sso, ALICE, redirect_uri,
                              scope='openid email profile read write', nonce=nonce)
    token = exchange(code, sso, redirect_uri).json()
    assert set(token['scope'].split()) == {'openid', 'email', 'profile', 'read', 'write'}

    header = token['id_token'].split('.')[0]
    assert b'"RS256"' in base64.urlsafe_b64decode(header + '=' * (-len(header) % 4))
    claims = jwt.decode(token['id_token'], JsonWebKey.import_key_set(jwks.json()), claims_options={
        'iss': {'essential': True, 'value': config['issuer']},
        'aud': {'essential': True, 'value': CLIENT_ID},
        'nonce': {'essential': True, 'value': nonce},
    })
    claims.validate()
    staff_sso_id = email_user_id('alice', 'Alice', 'Smith')
    assert claims['sub'] == staff_sso_id
    assert claims['email'] == ALICE.email
    assert claims['email_verified'] is True
    assert claims['given_name'] == 'Alice'
    assert claims['family_name'] == 'Smith'
    assert claims['name'] == 'Alice Smith'
    assert claims['user_id'] == user_id('alice')
    assert claims['email_user_id'] == staff_sso_id

    # Signed with the key the JWKS serves, not just any key.
    other_key = JsonWebKey.generate_key('RSA', 2048, is_private=True)
    with pytest.raises(Exception):
        jwt.decode(token['id_token'], other_key)

    userinfo = browser().get(sso.userinfo_url, headers={'Authorization': f'Bearer {token["access_token"]}'})
    assert userinfo.status_code == 200
    assert userinfo.json()['sub'] == staff_sso_id
    assert userinfo.json()['email'] == ALICE.email
    assert userinfo.json()['email_verified'] is True
    assert me(sso, token['access_token']).json()['email_user_id'] == staff_sso_id


def test_openid_claims_follow_the_scopes(sso, redirect_uri):
    code = authorization_code(browser(), sso, ALICE, redirect_uri, scope='openid read write')
    id_token = exchange(code, sso, redirect_uri).json()['id_token']
    keys = JsonWebKey.import_key_set(browser().get(sso.jwks_url).json())
    claims = jwt.decode(id_token, keys)
    assert claims['sub'] == email_user_id('alice', 'Alice', 'Smith')
    assert 'email' not in claims and 'email_verified' not in claims and 'given_name' not in claims


def test_an_unverified_email_is_said_to_be_so(sso, redirect_uri):
    # BOB is configured with --unverified-email (in another case: compared case-insensitively).
    code = authorization_code(browser(), sso, BOB, redirect_uri, scope='openid email profile')
    token = exchange(code, sso, redirect_uri).json()
    claims = jwt.decode(token['id_token'], JsonWebKey.import_key_set(browser().get(sso.jwks_url).json()))
    assert (claims['email'], claims['email_verified']) == (BOB.email, False)
    userinfo = browser().get(sso.userinfo_url, headers={'Authorization': f'Bearer {token["access_token"]}'})
    assert userinfo.json()['email_verified'] is False


def test_log_keeps_no_secrets(sso, redirect_uri):
    # Exercise a flow, then read what the provider logged about it and everything before.
    code = authorization_code(browser(), sso, ALICE, redirect_uri)
    exchange(code, sso, redirect_uri)
    log = sso.log_path.read_text()
    assert '"GET /o/authorize/?' in log
    assert '"POST /o/token/ HTTP/1.1" 200' in log
    for secret in (CLIENT_SECRET, ALICE.password, BOB.password, code):
        assert secret not in log


def test_restart_keeps_state_and_follows_the_command_line(tmp_path, redirect_uri):
    state_dir = tmp_path / 'sso'
    with StaffSSOProvider(free_port(), CLIENT_ID, CLIENT_SECRET, [redirect_uri], [ALICE, BOB],
                          state_dir) as first:
        jwks_before = browser().get(first.jwks_url).json()

    new_alice = ALICE._replace(password='new-alice-pass', first_name='Alicia')
    with StaffSSOProvider(free_port(), CLIENT_ID, 'new-secret', [redirect_uri], [new_alice],
                          state_dir) as second:
        assert browser().get(second.jwks_url).json() == jwks_before
        assert log_in(browser(), second, ALICE).status_code == 200  # the old password
        assert log_in(browser(), second, BOB).status_code == 200  # no longer on the command line
        code = authorization_code(browser(), second, new_alice, redirect_uri)
        assert exchange(code, second, redirect_uri).status_code == 401  # the old secret
        token = exchange(code, second, redirect_uri, secret='new-secret').json()
        profile = me(second, token['access_token']).json()
        assert profile['first_name'] == 'Alicia'
        assert profile['user_id'] == user_id('alice')
