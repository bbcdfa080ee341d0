"""Run the Staff SSO stand-in (tests.support.sso.provider) in a subprocess for the length of a test.

    with StaffSSOProvider(port=free_port(), client_id='data-flow', client_secret='s3cret',
                          redirect_uris=['http://127.0.0.1:8080/auth/oauth-authorized/authbroker'],
                          users=[SSOUser('alice', 'pa55word', 'alice.smith@example.gov.uk',
                                         'Alice', 'Smith')],
                          state_dir=tmp_path / 'sso',
                          unverified_emails=['bob@example.gov.uk']) as sso:
        sso.url            # http://127.0.0.1:PORT
        sso.authorize_url  # and token_url, me_url, discovery_url, login_url, logout_url
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, NamedTuple, Union

_REPO_ROOT = Path(__file__).resolve().parents[3]


class SSOUser(NamedTuple):
    username: str
    password: str
    email: str
    first_name: str
    last_name: str

    def to_arg(self) -> str:
        return ':'.join(self)


UserLike = Union[SSOUser, tuple, str]


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _user_arg(user: UserLike) -> str:
    if isinstance(user, str):
        return user
    return SSOUser(*user).to_arg()


class StaffSSOProvider:
    """The provider as a context manager: started and answering inside, stopped after."""

    def __init__(self, port: int, client_id: str, client_secret: str, redirect_uris: Iterable[str],
                 users: Iterable[UserLike], state_dir, *, app_name: str = 'data-flow',
                 unverified_emails: Iterable[str] = (), startup_timeout: float = 30.0,
                 stop_timeout: float = 10.0):
        self.port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris)
        self.users = [_user_arg(user) for user in users]
        self.state_dir = Path(state_dir)
        self.app_name = app_name
        # Their ID tokens say email_verified: false (everyone else's: true).
        self.unverified_emails = list(unverified_emails)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.url = f'http://127.0.0.1:{port}'
        self.log_path = self.state_dir / 'provider.log'
        self.process: subprocess.Popen | None = None
        self._log_file = None

    login_url = property(lambda self: f'{self.url}/accounts/login/')
    logout_url = property(lambda self: f'{self.url}/logout/')
    authorize_url = property(lambda self: f'{self.url}/o/authorize/')
    token_url = property(lambda self: f'{self.url}/o/token/')
    revoke_url = property(lambda self: f'{self.url}/o/revoke_token/')
    userinfo_url = property(lambda self: f'{self.url}/o/userinfo/')
    discovery_url = property(lambda self: f'{self.url}/o/.well-known/openid-configuration')
    jwks_url = property(lambda self: f'{self.url}/o/.well-known/jwks.json')
    me_url = property(lambda self: f'{self.url}/api/v1/user/me/')

    def __enter__(self) -> StaffSSOProvider:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError('the provider is already running')
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, '-m', 'tests.support.sso.provider',
            '--port', str(self.port),
            '--state-dir', str(self.state_dir),
            '--client-id', self.client_id,
            '--client-secret', self.client_secret,
            '--app-name', self.app_name,
        ]
        for uri in self.redirect_uris:
            command += ['--redirect-uri', uri]
        for user in self.users:
            command += ['--user', user]
        for email in self.unverified_emails:
            command += ['--unverified-email', email]
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        # The provider configures Django in code; a settings module inherited from the
        # caller's environment would be ignored at best.
        env.pop('DJANGO_SETTINGS_MODULE', None)
        self._log_file = open(self.log_path, 'ab')
        self.process = subprocess.Popen(
            command, cwd=_REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT,
            # Its own process group, so stop() reaches anything it starts and a Ctrl-C
            # meant for the test run does not kill it before the test cleans up.
            start_new_session=True,
        )
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def _wait_until_answering(self) -> None:
        # Not through any proxy the environment configures: the provider is on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f'the Staff SSO provider exited with code {self.process.returncode}; '
                                   f'log {self.log_path}:\n{self.log_tail()}')
            try:
                with opener.open(self.discovery_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f'the Staff SSO provider did not answer at {self.url} within '
                                   f'{self.startup_timeout} s; log {self.log_path}:\n{self.log_tail()}')
            time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])
        except FileNotFoundError:
            return ''
