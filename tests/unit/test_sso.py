"""The SSO rules on their own; tests/e2e/test_sso.py proves them with a real provider,
the real api-server and a real browser."""

import logging

import pytest
from flask import Flask, g

from dataflow.errors import ConfigurationError
from dataflow.settings import Settings
from dataflow.web import sso
from tests.support.settings import use_settings


@pytest.fixture
def settings(monkeypatch):
    values = {
        'SSO_PROVIDER': 'authbroker', 'AUTHBROKER_URL': 'https://sso.example', 'AUTHBROKER_CLIENT_ID': 'id',
        'AUTHBROKER_CLIENT_SECRET': 'secret', 'AUTHBROKER_ALLOWED_DOMAINS': 'digital.trade.gov.uk, Trade.Gov.UK',
        'SSO_ADMIN_EMAILS': 'Boss@trade.gov.uk', 'OIDC_DISCOVERY_URL': '', 'OIDC_CLIENT_ID': '', 'OIDC_CLIENT_SECRET': '',
    }
    use_settings(monkeypatch, **{name.lower(): value for name, value in values.items()})
    return monkeypatch


@pytest.mark.parametrize('email, allowed', [
    ('someone@trade.gov.uk', True),
    ('Someone@TRADE.GOV.UK', True),
    ('someone@digital.trade.gov.uk', True),
    ('someone@trade.gov.uk@evil.example', False),   # the domain is what follows the last '@'
    ('someone@evil.example', False),
    ('someone@sub.trade.gov.uk', False),            # exact domains only
    ('someone@trade.gov.uk.evil.example', False),
    ('someone@eviltrade.gov.uk', False),
    ('no-at-sign', False),
    ('', False),
])
def test_domains_are_matched_exactly_after_the_last_at(settings, email, allowed):
    assert sso.is_allowed(email) is allowed


class Remote:
    """Stands in for authlib's remote app: returns a fixed user for /api/v1/user/me/."""

    def __init__(self, me):
        self.me, self.paths = me, []

    def get(self, path):
        self.paths.append(path)
        me = self.me

        class Response:
            def raise_for_status(self):
                pass

            def json(self):
                return me

        return Response()


def test_authbroker_user_info_and_admin_role(settings):
    with Flask(__name__).test_request_context():
        remote = Remote({'email': 'Boss@Trade.gov.uk', 'first_name': 'Ann', 'last_name': 'Boss', 'user_id': 'u1'})
        info = sso.user_info('authbroker', remote, {})
        assert remote.paths == ['api/v1/user/me/']
        assert info == {'username': 'boss@trade.gov.uk', 'email': 'Boss@Trade.gov.uk', 'first_name': 'Ann',
                        'last_name': 'Boss', 'role_keys': [sso.ADMIN_ROLE_KEY]}
        plain = sso.user_info('authbroker', Remote({'email': 'a@digital.trade.gov.uk'}), {})
        assert plain['role_keys'] == [] and plain['first_name'] == ''


def test_oidc_user_info_comes_from_the_id_token_claims(settings):
    with Flask(__name__).test_request_context():
        claims = {'email': 'a@trade.gov.uk', 'given_name': 'A', 'family_name': 'B', 'email_verified': True}
        assert sso.user_info('oidc', None, {'userinfo': claims})['last_name'] == 'B'


@pytest.mark.parametrize('verified, allowed', [
    (True, True), ('true', True), ('TRUE', True), ('True', True),
    (False, False), ('false', False), (None, False), ('', False), ('yes', False), ('1', False), (1, False),
    (' true', False), ('missing', False),
])
def test_oidc_needs_the_provider_to_have_verified_the_email(settings, verified, allowed):
    claims = {'email': 'a@trade.gov.uk', 'given_name': 'A', 'family_name': 'B'}
    if verified != 'missing':
        claims['email_verified'] = verified
    with Flask(__name__).test_request_context():
        if allowed:
            assert sso.user_info('oidc', None, {'userinfo': claims})['email'] == 'a@trade.gov.uk'
        else:
            with pytest.raises(sso.LoginRefused) as refused:
                sso.user_info('oidc', None, {'userinfo': claims})
            assert str(refused.value) == sso.NOT_VERIFIED
            assert g.get(sso._REFUSED) == ('a@trade.gov.uk', sso.NOT_VERIFIED)


def test_oidc_claims_fetched_from_userinfo_are_checked_too(settings):
    class Remote:
        def userinfo(self):
            return {'email': 'a@trade.gov.uk'}  # no email_verified

    with Flask(__name__).test_request_context(), pytest.raises(sso.LoginRefused, match=sso.NOT_VERIFIED):
        sso.user_info('oidc', Remote(), {})


def test_a_disallowed_domain_is_the_reason_given_even_when_unverified(settings):
    with Flask(__name__).test_request_context(), pytest.raises(sso.LoginRefused, match=sso.NOT_ALLOWED):
        sso.user_info('oidc', None, {'userinfo': {'email': 'a@evil.example', 'email_verified': False}})


def test_staff_sso_has_no_verified_claim_and_needs_none(settings):
    with Flask(__name__).test_request_context():
        assert sso.user_info('authbroker', Remote({'email': 'a@trade.gov.uk'}), {})['email'] == 'a@trade.gov.uk'


def test_a_refused_login_is_recorded_for_the_not_allowed_page(settings):
    with Flask(__name__).test_request_context():
        with pytest.raises(sso.LoginRefused):
            sso.user_info('authbroker', Remote({'email': 'someone@trade.gov.uk@evil.example'}), {})
        assert g.get(sso._REFUSED) == ('someone@trade.gov.uk@evil.example', sso.NOT_ALLOWED)
        page = sso.refused_page('<script>@evil.example', sso.NOT_ALLOWED)
        assert page.status_code == 403 and b'&lt;script&gt;@evil.example is not allowed' in page.data
        assert b'email domain not allowed' in page.data and b'allowed organisation' in page.data
        unverified = sso.refused_page('a@trade.gov.uk', sso.NOT_VERIFIED).get_data(as_text=True)
        assert 'a@trade.gov.uk is not allowed to use data-flow: <span id="reason">email address not verified ' \
               'by the provider</span>' in unverified and 'domain' not in unverified


@pytest.mark.parametrize('provider, info', [
    ('authbroker', {'email': 'mallory@evil.example'}),
    ('authbroker', {'email': 'someone@trade.gov.uk@evil.example'}),
    ('oidc', {'email': 'mallory@evil.example', 'email_verified': True}),
    ('oidc', {'email': 'unproven@trade.gov.uk', 'email_verified': 'false'}),
])
def test_a_refusal_never_puts_the_email_in_an_exception_or_the_log(settings, caplog, provider, info):
    # FAB logs the message of what get_oauth_user_info raises, at ERROR: it must not hold the email.
    caplog.set_level(logging.DEBUG)
    email = info['email']
    remote = Remote(info) if provider == 'authbroker' else None
    with Flask(__name__).test_request_context(), pytest.raises(sso.LoginRefused) as refused:
        sso.user_info(provider, remote, {'userinfo': info})
    assert str(refused.value) in (sso.NOT_ALLOWED, sso.NOT_VERIFIED)
    assert email not in repr(refused.value.args) and email.split('@')[0] not in str(refused.value)
    logged = '\n'.join(record.getMessage() for record in caplog.records)
    assert sso.email_domain(email) in logged  # the domain only
    assert email not in logged and email.split('@')[0] not in logged


@pytest.mark.parametrize('changes, message', [
    ({'AUTHBROKER_ALLOWED_DOMAINS': ' , '}, 'AUTHBROKER_ALLOWED_DOMAINS must list'),
    ({'AUTHBROKER_URL': ''}, 'SSO_PROVIDER=authbroker needs AUTHBROKER_URL'),
    ({'AUTHBROKER_CLIENT_SECRET': '', 'AUTHBROKER_CLIENT_ID': ''},
     'needs AUTHBROKER_CLIENT_ID, AUTHBROKER_CLIENT_SECRET'),
    ({'SSO_PROVIDER': 'oidc'}, 'SSO_PROVIDER=oidc needs OIDC_DISCOVERY_URL, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET'),
    ({'SSO_PROVIDER': 'github'}, "SSO_PROVIDER must be 'authbroker' or 'oidc'"),
])
def test_missing_settings_are_named(settings, changes, message):
    use_settings(settings, **{name.lower(): value for name, value in changes.items()})
    with pytest.raises(ConfigurationError, match=message):
        sso.oauth_providers()


def test_provider_endpoints(settings):
    [authbroker] = sso.oauth_providers()
    remote = authbroker['remote_app']
    assert (authbroker['name'], remote['authorize_url'], remote['access_token_url'], remote['client_kwargs']) == (
        'authbroker', 'https://sso.example/o/authorize/', 'https://sso.example/o/token/', {'scope': 'read write'})
    use_settings(settings, sso_provider='oidc', oidc_discovery_url='https://idp.example/.well-known/openid-configuration',
                 oidc_client_id='c', oidc_client_secret='s')
    [oidc] = sso.oauth_providers()
    assert oidc['remote_app']['server_metadata_url'].endswith('/.well-known/openid-configuration')
    assert 'openid' in oidc['remote_app']['client_kwargs']['scope']


def test_every_signed_in_role_may_read_plugins_so_the_datasets_menu_shows():
    roles = {config['role']: config['perms'] for config in sso._security_manager_class().ROLE_CONFIGS}
    assert {role for role, perms in roles.items() if ('can_read', 'Plugins') in perms} == {
        'Viewer', 'User', 'Op', 'Admin'}
    assert roles['Public'] == []
    assert all(perms.count(('can_read', 'Plugins')) == 1 for role, perms in roles.items() if role != 'Public')


@pytest.mark.parametrize('value, hours', [(None, 8), ('', 8), ('2', 2), ('24', 24)])
def test_sso_session_hours_default_to_eight(value, hours):
    assert Settings.from_environ({} if value is None else {'SSO_SESSION_HOURS': value}).sso_session_hours == hours


@pytest.mark.parametrize('value, message', [
    ('0', 'SSO_SESSION_HOURS must be at least 1, got 0'),
    ('-3', 'SSO_SESSION_HOURS must be at least 1, got -3'),
    ('8h', "SSO_SESSION_HOURS must be a whole number, got '8h'"),
    ('1.5', "SSO_SESSION_HOURS must be a whole number, got '1.5'"),
])
def test_sso_session_hours_must_be_a_positive_whole_number(value, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_environ({'SSO_SESSION_HOURS': value})
