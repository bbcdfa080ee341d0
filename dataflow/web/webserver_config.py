"""The FAB auth manager's configuration (Airflow's `[fab] config_file`): single sign-on
with Staff SSO or an OpenID Connect provider. See dataflow/web/sso.py and docs/sso.md."""

from flask_appbuilder.const import AUTH_OAUTH

from dataflow import settings
from dataflow.web import sso

AUTH_TYPE = AUTH_OAUTH
OAUTH_PROVIDERS = sso.oauth_providers()
SECURITY_MANAGER_CLASS = sso._security_manager_class()

AUTH_USER_REGISTRATION = True
AUTH_USER_REGISTRATION_ROLE = settings.current().sso_default_role
AUTH_ROLES_MAPPING = {sso.ADMIN_ROLE_KEY: ['Admin']}
# Roles follow the settings at every login: removing an email from SSO_ADMIN_EMAILS takes
# its Admin role away at the next login (and role changes made in the UI do not last).
AUTH_ROLES_SYNC_AT_LOGIN = True

# Cookies: Secure outside development; SameSite=Lax, because Strict would drop the session
# cookie on the provider's redirect back to /auth/oauth-authorized/<provider>, and the
# login would fail its state check.
SESSION_COOKIE_SECURE = not settings.current().debug
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = 'Lax'
WTF_CSRF_ENABLED = True
