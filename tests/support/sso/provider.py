"""A local stand-in for the UK government's Staff SSO ("authbroker"), for end-to-end tests.

Staff SSO is a django-oauth-toolkit (DOT) provider, so this is one too: the OAuth2 and
OpenID Connect endpoints are DOT's own, not imitations, and a client that works against
this should work against the real thing. It is a whole Django project configured in
code, run from the repository root:

    python -m tests.support.sso.provider --port 8765 --state-dir /tmp/sso \\
        --client-id data-flow --client-secret s3cret \\
        --redirect-uri http://127.0.0.1:8080/auth/oauth-authorized/authbroker \\
        --user 'alice:pa55word:alice.smith@example.gov.uk:Alice:Smith' \\
        --unverified-email someone@example.gov.uk

What it serves on http://127.0.0.1:PORT (the same paths as Staff SSO):

    /accounts/login/                      login form (username, password, #login-submit)
    /logout/                              ends the SSO session; ?next= back to a loopback URL
    /o/authorize/  /o/token/  /o/revoke_token/  /o/introspect/       (DOT)
    /o/.well-known/openid-configuration  /o/.well-known/jwks.json  /o/userinfo/  (DOT, OIDC)
    /api/v1/user/me/                      the Staff SSO user profile, for a Bearer token

The ID token and /o/userinfo/ carry `email_verified` (scope `email`): true, except for the
emails given with --unverified-email, as a provider says of an address nobody has proved
is theirs.

State (SQLite database, OIDC signing key, Django secret key) lives in --state-dir and is
reused on the next start; users and the OAuth application are brought in line with the
command line on every start.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import secrets
import signal
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger('staff_sso')

EMAIL_USER_ID_DOMAIN = 'id.trade.gov.uk'

# Fixed so that a user's ids depend on the username alone: the same in every state dir
# and every run, so tests can predict them without asking the provider.
_USER_ID_NAMESPACE = uuid.UUID('5b0d6f1e-6a57-4d0b-9a59-2f4c3e0d9a11')

# Query parameters that carry credentials. Browsers and clients put some of them in URLs
# (the code on the way back, a token now and then), and the request log must not keep them.
_CREDENTIAL_PARAMS = ('client_secret', 'password', 'access_token', 'refresh_token', 'token',
                      'id_token_hint', 'code', 'code_verifier')
_CREDENTIAL_IN_QUERY = re.compile(r'([?&](?:%s)=)[^&\s]*' % '|'.join(_CREDENTIAL_PARAMS))

SCOPES = {
    'read': 'Read scope',
    'write': 'Write scope',
    'openid': 'OpenID Connect scope',
    'email': 'Email address',
    'profile': 'Name',
}

LOGIN_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Staff SSO (test stand-in)</title></head>
<body>
<h1>Sign in</h1>
{% if form.errors %}<p id="login-error">Your username and password did not match. Please try again.</p>{% endif %}
<form method="post" action="{% url 'login' %}">
{% csrf_token %}
<p><label for="id_username">Username</label>
<input type="text" name="username" id="id_username" autocomplete="username" autofocus required></p>
<p><label for="id_password">Password</label>
<input type="password" name="password" id="id_password" autocomplete="current-password" required></p>
<input type="hidden" name="next" value="{{ next }}">
<button type="submit" id="login-submit">Sign in</button>
</form>
</body>
</html>
"""


@dataclasses.dataclass(frozen=True)
class UserSpec:
    username: str
    # Kept out of repr so a user list can be logged or shown in a test failure.
    password: str = dataclasses.field(repr=False)
    email: str
    first_name: str
    last_name: str

    @classmethod
    def parse(cls, text: str) -> UserSpec:
        """'username:password:email:first:last'; only the password may contain ':'."""
        username, sep, rest = text.partition(':')
        fields = rest.rsplit(':', 3)
        if not sep or len(fields) != 4 or not username or not fields[0] or not fields[1]:
            raise ValueError("a user is 'username:password:email:first:last'")
        password, email, first_name, last_name = fields
        # Staff SSO lower-cases every address it stores.
        return cls(username, password, email.lower(), first_name, last_name)


def user_id(username: str) -> str:
    """The user's Staff SSO `user_id`: a UUID, stable for a username."""
    return str(uuid.uuid5(_USER_ID_NAMESPACE, username))


def email_user_id(username: str, first_name: str, last_name: str) -> str:
    """The user's Staff SSO `email_user_id`, e.g. 'alice.smith-1a2b3c4d@id.trade.gov.uk'."""
    def slug(text):
        return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-')

    local = '.'.join(part for part in (slug(first_name), slug(last_name)) if part)
    local = local or slug(username) or 'user'
    return f'{local}-{uuid.UUID(user_id(username)).hex[:8]}@{EMAIL_USER_ID_DOMAIN}'


def staff_sso_profile(user, application) -> dict:
    """What Staff SSO's GET /api/v1/user/me/ answers for `user`, asked by `application`.

    The ids are derived from the username rather than stored, so the stand-in needs no
    models (and no migrations) of its own.
    """
    redirect = urlsplit(application.redirect_uris.split()[0]) if application.redirect_uris else None
    return {
        'email': user.email,
        'user_id': user_id(user.username),
        'email_user_id': email_user_id(user.username, user.first_name, user.last_name),
        'first_name': user.first_name,
        'last_name': user.last_name,
        'related_emails': [],
        'contact_email': user.email,
        # Staff SSO always answers an empty list here.
        'groups': [],
        # Staff SSO lists every application the user may use; here that is the one client.
        'permitted_applications': [{
            'key': application.name,
            'url': f'{redirect.scheme}://{redirect.netloc}/' if redirect else '',
            'name': application.name,
        }],
        'access_profiles': [],
    }


def redact_credentials(text: str) -> str:
    return _CREDENTIAL_IN_QUERY.sub(r'\1[redacted]', text)


def _read_or_create(path: Path, make) -> str:
    """The file's text, written first (owner-only, atomically) if it does not exist."""
    if not path.exists():
        tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(make())
        os.replace(tmp, path)
    return path.read_text()


def _new_rsa_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def configure(state_dir: Path, port: int, unverified_emails: frozenset[str] = frozenset()) -> None:
    """Configure and set up Django for a provider at http://127.0.0.1:`port`, whose
    `email_verified` claim is false for `unverified_emails` (lower case)."""
    import django
    from django.conf import settings

    # Kept across restarts so sessions and signatures made before a restart stay valid,
    # and the JWKS a client cached keeps verifying new id_tokens.
    secret_key = _read_or_create(state_dir / 'secret_key', lambda: secrets.token_urlsafe(50))
    oidc_key = _read_or_create(state_dir / 'oidc_rsa_key.pem', _new_rsa_key_pem)

    settings.configure(
        DEBUG=False,
        SECRET_KEY=secret_key,
        ALLOWED_HOSTS=['127.0.0.1', 'localhost'],
        INSTALLED_APPS=[
            'django.contrib.auth',
            'django.contrib.contenttypes',
            'django.contrib.sessions',
            'oauth2_provider',
        ],
        MIDDLEWARE=[
            'django.contrib.sessions.middleware.SessionMiddleware',
            'django.middleware.common.CommonMiddleware',
            'django.middleware.csrf.CsrfViewMiddleware',
            'django.contrib.auth.middleware.AuthenticationMiddleware',
        ],
        # This module is the URLconf; main() fills in `urlpatterns` once Django is set up.
        ROOT_URLCONF=__name__,
        TEMPLATES=[{
            'BACKEND': 'django.template.backends.django.DjangoTemplates',
            'OPTIONS': {
                'loaders': [
                    ('django.template.loaders.locmem.Loader', {'staff_sso/login.html': LOGIN_TEMPLATE}),
                    # DOT's error page for a bad authorization request.
                    'django.template.loaders.app_directories.Loader',
                ],
                'context_processors': [
                    'django.template.context_processors.request',
                    'django.contrib.auth.context_processors.auth',
                ],
            },
        }],
        DATABASES={
            'default': {
                'ENGINE': 'django.db.backends.sqlite3',
                'NAME': str(state_dir / 'provider.sqlite3'),
                'OPTIONS': {
                    # Requests run on threads, each with its own connection: WAL lets reads
                    # go on during a write, and taking the write lock up front (IMMEDIATE)
                    # avoids the lock-upgrade deadlock that fails a transaction at once.
                    'init_command': 'PRAGMA journal_mode=WAL;',
                    'transaction_mode': 'IMMEDIATE',
                    'timeout': 20,
                },
            },
        },
        DEFAULT_AUTO_FIELD='django.db.models.BigAutoField',
        USE_TZ=True,
        TIME_ZONE='UTC',
        # DOT's templates {% load static %}; nothing is served from here.
        STATIC_URL='/static/',
        LOGIN_URL='/accounts/login/',
        LOGIN_REDIRECT_URL='/',
        # Cookies do not keep ports apart: on 127.0.0.1 the relying party under test sees
        # this provider's cookies and the other way round, so the names must not clash
        # with the usual 'sessionid'/'csrftoken'/'session'.
        SESSION_COOKIE_NAME='sso_sessionid',
        CSRF_COOKIE_NAME='sso_csrftoken',
        # Test-only passwords: PBKDF2's deliberate ~0.5 s per hash would be paid at every
        # login and for every user at every start.
        PASSWORD_HASHERS=['django.contrib.auth.hashers.MD5PasswordHasher'],
        # main() configures logging itself, before Django is imported.
        LOGGING_CONFIG=None,
        OAUTH2_PROVIDER={
            'OIDC_ENABLED': True,
            'OIDC_RSA_PRIVATE_KEY': oidc_key,
            # Otherwise the issuer follows the Host header, and a browser on 'localhost'
            # would be handed id_tokens from a different issuer than the server-side
            # client that discovered '127.0.0.1'.
            'OIDC_ISS_ENDPOINT': f'http://127.0.0.1:{port}/o',
            'SCOPES': dict(SCOPES),
            # What Staff SSO's clients ask for; also what a request without `scope` gets.
            'DEFAULT_SCOPES': ['read', 'write'],
            # DOT 3 requires PKCE by default; Staff SSO's clients do not send it.
            'PKCE_REQUIRED': False,
            # Set to the Staff SSO validator by _install_validator(), which can only be
            # defined once DOT's models can be imported.
        },
    )
    django.setup()
    _install_validator(unverified_emails)


def _install_validator(unverified_emails: frozenset[str]) -> None:
    from django.conf import settings
    from oauth2_provider.oauth2_validators import OAuth2Validator
    from oauth2_provider.settings import oauth2_settings

    class StaffSSOValidator(OAuth2Validator):
        # Staff SSO's own validator adds user_id, email_user_id, first_name, last_name
        # claims, which DOT would drop for having no scope: they come with openid/profile.
        oidc_claim_scope = {
            **OAuth2Validator.oidc_claim_scope,
            'user_id': 'openid',
            'email_user_id': 'openid',
            'first_name': 'profile',
            'last_name': 'profile',
        }

        # The request-free form (callables of the request), because only with it does DOT
        # list the claims in the discovery document's claims_supported.
        def get_additional_claims(self):
            def name(request):
                return ' '.join(n for n in (request.user.first_name, request.user.last_name) if n)

            def staff_sso_email_user_id(request):
                user = request.user
                return email_user_id(user.username, user.first_name, user.last_name)

            return {
                # Staff SSO's subject is the email_user_id.
                'sub': staff_sso_email_user_id,
                'email': lambda request: request.user.email,
                # JSON true or false, as OpenID Connect says; DOT gives it with scope 'email'.
                'email_verified': lambda request: request.user.email.lower() not in unverified_emails,
                'email_user_id': staff_sso_email_user_id,
                'user_id': lambda request: user_id(request.user.username),
                'first_name': lambda request: request.user.first_name,
                'last_name': lambda request: request.user.last_name,
                'given_name': lambda request: request.user.first_name,
                'family_name': lambda request: request.user.last_name,
                'name': name,
            }

    settings.OAUTH2_PROVIDER['OAUTH2_VALIDATOR_CLASS'] = StaffSSOValidator
    # DOT caches settings on first read; drop anything read during setup.
    oauth2_settings.reload()


def _build_urlpatterns() -> list:
    from django.contrib.auth import logout
    from django.contrib.auth.views import LoginView
    from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
    from django.urls import include, path
    from django.utils.html import escape
    from oauth2_provider import urls as dot_urls
    from oauth2_provider.views import ProtectedResourceView

    class UserMeView(ProtectedResourceView):
        """Staff SSO's GET /api/v1/user/me/."""

        def verify_request(self, request):
            valid, oauthlib_request = super().verify_request(request)
            # The profile depends on the client the token was issued to.
            self.oauthlib_request = oauthlib_request
            return valid, oauthlib_request

        def unauthenticated_response(self, request, oauthlib_request=None):
            # Staff SSO's API is Django REST framework, which answers a missing or unknown
            # token like this; DOT's view would answer a bare 403.
            response = JsonResponse({'detail': 'Authentication credentials were not provided.'},
                                    status=401)
            response['WWW-Authenticate'] = 'Bearer realm="api"'
            return response

        def get(self, request, *args, **kwargs):
            return JsonResponse(staff_sso_profile(request.resource_owner, self.oauthlib_request.client))

    def logout_view(request):
        logout(request)
        next_url = request.GET.get('next', '')
        target = urlsplit(next_url)
        # Only back to this machine: the relying parties under test all run on loopback.
        if target.scheme in ('http', 'https') and target.hostname in ('127.0.0.1', 'localhost'):
            return HttpResponseRedirect(next_url)
        return HttpResponse('<!DOCTYPE html><title>Signed out</title><p id="signed-out">Signed out.</p>')

    def index(request):
        who = escape(request.user.email) if request.user.is_authenticated else 'nobody'
        return HttpResponse(f'<!DOCTYPE html><title>Staff SSO (test stand-in)</title>'
                            f'<p id="signed-in-as">Signed in as {who}.</p>')

    # Not the whole of oauth2_provider.urls: its application-management pages have no
    # counterpart in Staff SSO, and dynamic client registration is off.
    oauth_urls = dot_urls.base_urlpatterns + dot_urls.oidc_urlpatterns + dot_urls.metadata_urlpatterns
    return [
        path('o/', include((oauth_urls, 'oauth2_provider'), namespace='oauth2_provider')),
        path('accounts/login/', LoginView.as_view(template_name='staff_sso/login.html'), name='login'),
        path('logout/', logout_view, name='logout'),
        path('api/v1/user/me/', UserMeView.as_view(), name='user-me'),
        path('', index, name='index'),
    ]


def provision(client_id: str, client_secret: str, redirect_uris: list[str], users: list[UserSpec],
              app_name: str) -> None:
    """Bring the users and the one OAuth application in line with the command line."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from oauth2_provider.models import get_application_model

    User = get_user_model()
    Application = get_application_model()
    with transaction.atomic():
        for spec in users:
            user, _ = User.objects.get_or_create(username=spec.username)
            user.email = spec.email
            user.first_name = spec.first_name
            user.last_name = spec.last_name
            user.is_active = True
            user.set_password(spec.password)
            user.save()
        # Users dropped from the command line must not be able to sign in with an old state dir.
        User.objects.exclude(username__in=[spec.username for spec in users]).update(is_active=False)

        Application.objects.exclude(client_id=client_id).delete()
        app = Application.objects.filter(client_id=client_id).first() or Application(client_id=client_id)
        app.name = app_name
        app.client_type = Application.CLIENT_CONFIDENTIAL
        app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
        # DOT 3 hashes the secret on save by default (and would then skip re-hashing a
        # value that happened to look like a hash); stored as given, it is compared as given.
        app.hash_client_secret = False
        app.client_secret = client_secret
        app.redirect_uris = ' '.join(redirect_uris)
        app.skip_authorization = True
        app.algorithm = Application.RS256_ALGORITHM
        # Reject a malformed redirect URI now, not at the first login.
        app.full_clean()
        app.save()
    log.info('Application %r: client_id %r, redirect URIs %s; users: %s', app_name, client_id,
             ' '.join(redirect_uris), ', '.join(spec.username for spec in users) or 'none')


def serve(port: int) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class RequestHandler(WSGIRequestHandler):
        def log_message(self, format, *args):
            # args[0] is the request line of an access-log entry.
            if args and isinstance(args[0], str):
                args = (redact_credentials(args[0]),) + args[1:]
            super().log_message(format, *args)

    class Server(ThreadedWSGIServer):
        # A browser opens several connections at once; the default backlog of 10 can
        # refuse some of them while a slow request holds a thread.
        request_queue_size = 64

    httpd = Server(('127.0.0.1', port), RequestHandler)
    httpd.set_app(WSGIHandler())

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    log.info('Staff SSO stand-in listening on http://127.0.0.1:%d', httpd.server_port)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        log.info('Staff SSO stand-in stopped')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m tests.support.sso.provider', description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, required=True, help='port on 127.0.0.1')
    parser.add_argument('--state-dir', required=True, help='database, keys; created if missing')
    parser.add_argument('--client-id', required=True)
    parser.add_argument('--client-secret', required=True)
    parser.add_argument('--redirect-uri', action='append', required=True, dest='redirect_uris',
                        help='a registered redirect URI; repeat for more')
    parser.add_argument('--user', action='append', default=[], dest='users', type=_user_arg,
                        help="'username:password:email:first:last'; repeat for more")
    parser.add_argument('--unverified-email', action='append', default=[], dest='unverified_emails',
                        help='an email whose email_verified claim is false; repeat for more')
    parser.add_argument('--app-name', default='data-flow',
                        help="the application's name (its key in permitted_applications)")
    return parser.parse_args(argv)


def _user_arg(text: str) -> UserSpec:
    try:
        return UserSpec.parse(text)
    except ValueError as exc:
        # Not the text itself: it holds the password.
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    # oauthlib's debug output includes request bodies, client secrets among them.
    logging.getLogger('oauthlib').setLevel(logging.WARNING)

    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    configure(state_dir, args.port, frozenset(email.lower() for email in args.unverified_emails))

    from django.core.management import call_command

    globals()['urlpatterns'] = _build_urlpatterns()
    call_command('migrate', interactive=False, verbosity=0)
    provision(args.client_id, args.client_secret, args.redirect_uris, args.users, args.app_name)
    serve(args.port)


if __name__ == '__main__':
    main()
