"""Single sign-on for the Airflow UI and API, through the FAB auth manager.

Staff SSO (authbroker) is the default provider: OAuth2 with `/o/authorize/`, `/o/token/`
and the user from `GET /api/v1/user/me/`. Any OpenID Connect provider can be used instead
(SSO_PROVIDER=oidc, with its discovery URL). Either way:

- only emails whose domain (the part after the last '@', compared case-insensitively and
  exactly) is in AUTHBROKER_ALLOWED_DOMAINS get in; anyone else sees a "not allowed" page
  and no user is created;
- in OpenID Connect mode, the provider must also vouch for the address: an ID token
  whose `email_verified` claim is not true (JSON true, or the string 'true' in any case)
  is refused the same way. Staff SSO's profile has no such claim: its addresses are the
  organisation's own;
- a new user gets SSO_DEFAULT_ROLE (Viewer unless set); emails in SSO_ADMIN_EMAILS get
  Admin as well. Roles are worked out again at every login.

A refused person's email address is shown to them on the refused page and never logged,
nor put in an exception's message: FAB logs the message of whatever `get_oauth_user_info`
raises at ERROR. Only the email's domain is logged, which says which organisation tried
without saying who.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from flask import Response, g, get_flashed_messages, make_response, session

from dataflow import settings
from dataflow.errors import ConfigurationError

log = logging.getLogger(__name__)

AUTHBROKER = 'authbroker'
OIDC = 'oidc'
ADMIN_ROLE_KEY = 'dataflow-admin'
_REFUSED = 'dataflow_sso_refused'  # flask.g: (email, reason) of a refused login
# Why a login was refused: the LoginRefused message, and what the refused page tells them.
NOT_ALLOWED = 'email domain not allowed'
NOT_VERIFIED = 'email address not verified by the provider'


def _csv(value: str) -> list[str]:
    return [item.strip().lower() for item in value.split(',') if item.strip()]


def allowed_domains() -> frozenset[str]:
    return frozenset(_csv(settings.current().authbroker_allowed_domains))


def admin_emails() -> frozenset[str]:
    return frozenset(_csv(settings.current().sso_admin_emails))


def email_domain(email: str) -> str:
    """The part after the last '@': 'a@trade.gov.uk@evil.example' is from evil.example."""
    return email.rpartition('@')[2].strip().lower() if email and '@' in email else ''


def is_allowed(email: str) -> bool:
    return email_domain(email) in allowed_domains()


def _require(**required: str) -> None:
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise ConfigurationError(f'SSO_PROVIDER={settings.current().sso_provider} needs {", ".join(missing)}')


def oauth_providers() -> list[dict[str, Any]]:
    """FAB's OAUTH_PROVIDERS for the configured provider; a clear error when settings are missing."""
    config = settings.current()
    if not allowed_domains():
        raise ConfigurationError('AUTHBROKER_ALLOWED_DOMAINS must list the email domains allowed in '
                                 '(e.g. digital.trade.gov.uk,trade.gov.uk)')
    if config.sso_provider == AUTHBROKER:
        _require(AUTHBROKER_URL=config.authbroker_url, AUTHBROKER_CLIENT_ID=config.authbroker_client_id,
                 AUTHBROKER_CLIENT_SECRET=config.authbroker_client_secret)
        base = config.authbroker_url
        return [{
            'name': AUTHBROKER,
            'icon': 'fa-sign-in',
            'token_key': 'access_token',
            'remote_app': {
                'client_id': config.authbroker_client_id,
                'client_secret': config.authbroker_client_secret,
                'api_base_url': f'{base}/',
                'authorize_url': f'{base}/o/authorize/',
                'access_token_url': f'{base}/o/token/',
                'client_kwargs': {'scope': 'read write'},
            },
        }]
    if config.sso_provider == OIDC:
        _require(OIDC_DISCOVERY_URL=config.oidc_discovery_url, OIDC_CLIENT_ID=config.oidc_client_id,
                 OIDC_CLIENT_SECRET=config.oidc_client_secret)
        return [{
            'name': OIDC,
            'icon': 'fa-sign-in',
            'token_key': 'access_token',
            'remote_app': {
                'client_id': config.oidc_client_id,
                'client_secret': config.oidc_client_secret,
                'server_metadata_url': config.oidc_discovery_url,
                'client_kwargs': {'scope': 'openid email profile'},
            },
        }]
    raise ConfigurationError(f"SSO_PROVIDER must be '{AUTHBROKER}' or '{OIDC}', got {config.sso_provider!r}")


class LoginRefused(Exception):
    """The provider vouched for the user, but data-flow does not let them in. The message
    is the reason only (NOT_ALLOWED, NOT_VERIFIED): FAB logs it, so it never holds the email."""


def email_verified(claims: dict[str, Any]) -> bool:
    """Whether OpenID Connect claims say the provider verified the email: JSON true, or the
    string 'true' in any case (some providers send strings). Missing or anything else: no."""
    verified = claims.get('email_verified')
    return verified is True or (isinstance(verified, str) and verified.lower() == 'true')


def _refuse(email: str, reason: str) -> LoginRefused:
    """The exception refusing `email`'s login for `reason`. The email goes to flask.g only,
    for the refused page; the log gets the domain alone."""
    log.warning('SSO login refused (%s): email domain %r', reason, email_domain(email))
    g.setdefault(_REFUSED, (email or '(no email)', reason))
    return LoginRefused(reason)


def user_info(provider: str, remote: Any, token_response: dict[str, Any]) -> dict[str, Any]:
    """FAB's user info (username, email, names, role keys) from the provider."""
    verified = True
    if provider == AUTHBROKER:
        response = remote.get('api/v1/user/me/')
        response.raise_for_status()
        me = response.json()
        email, first_name, last_name = me.get('email'), me.get('first_name'), me.get('last_name')
    elif provider == OIDC:
        claims = token_response.get('userinfo') or remote.userinfo()
        email, first_name, last_name = claims.get('email'), claims.get('given_name'), claims.get('family_name')
        verified = email_verified(claims)
    else:
        raise LoginRefused(f'unknown provider {provider!r}')
    if not email or not is_allowed(email):
        raise _refuse(email or '', NOT_ALLOWED)
    if not verified:
        # Anyone can type an allowed address into a provider that lets people sign up:
        # the domain says nothing until the provider has checked the address is theirs.
        raise _refuse(email, NOT_VERIFIED)
    email = email.strip()
    return {
        'username': email.lower(),
        'email': email,
        'first_name': first_name or '',
        'last_name': last_name or '',
        'role_keys': [ADMIN_ROLE_KEY] if email.lower() in admin_emails() else [],
    }


_EXPLANATIONS = {
    NOT_ALLOWED: 'Only staff whose email belongs to an allowed organisation can sign in.',
    NOT_VERIFIED: 'Your sign-in provider has not verified that this address is yours: verify it there, '
                  'then sign in again.',
}


def refused_page(email: str, reason: str) -> Response:
    """The 403 page the refused person sees: their email and why it was refused."""
    body = f"""<!doctype html><html><head><title>Not allowed - data-flow</title></head><body>
<h1>Not allowed</h1>
<p id="not-allowed">{html.escape(email)} is not allowed to use data-flow: <span id="reason">{html.escape(reason)}</span>.
{html.escape(_EXPLANATIONS.get(reason, ''))}</p>
<p>If you think you should have access, ask the data-flow administrators.</p>
</body></html>"""
    response = make_response(body, 403)
    response.headers['Content-Type'] = 'text/html; charset=utf-8'
    return response


def _security_manager_class() -> type:
    """The security manager named in webserver_config.py. Built on first use: its base
    classes import the FAB provider, which only the api-server needs."""
    from flask_appbuilder import expose
    from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride
    from airflow.providers.fab.www.security import permissions
    from airflow.providers.fab.auth_manager.views.auth_oauth import CustomAuthOAuthView

    class DataflowAuthOAuthView(CustomAuthOAuthView):
        @expose('/oauth-authorized/<provider>')
        def oauth_authorized(self, provider: str) -> Any:
            response = super().oauth_authorized(provider)
            refused = g.pop(_REFUSED, None)
            if refused is None:
                return response
            get_flashed_messages()  # FAB's generic "invalid login": the page below says why
            session.clear()         # drop the refused person's provider token
            return refused_page(*refused)

    read_plugins = (permissions.ACTION_CAN_READ, permissions.RESOURCE_PLUGIN)

    class DataflowSecurityManager(FabAirflowSecurityManagerOverride):
        authoauthview = DataflowAuthOAuthView
        # The UI lists plugins' pages (the Datasets pages) only to those who may read
        # plugins, which FAB's roles give to Op and Admin; every signed-in role browses
        # the datasets. Synced into the roles when the api-server starts.
        ROLE_CONFIGS = [
            config if config['role'] == 'Public' or read_plugins in config['perms']
            else {**config, 'perms': [*config['perms'], read_plugins]}
            for config in FabAirflowSecurityManagerOverride.ROLE_CONFIGS
        ]

        def get_oauth_user_info(self, provider: str, resp: dict[str, Any]) -> dict[str, Any]:
            return user_info(provider, self.oauth_remotes[provider], resp)

    return DataflowSecurityManager
