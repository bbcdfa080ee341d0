"""A bearer token, as a `requests` auth: `Authorization: Bearer <token>` on every request.
The token is never logged, nor shown in this object's repr."""

from __future__ import annotations

import requests
import requests.auth

from dataflow.errors import ConfigurationError


class BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        if not token:
            raise ConfigurationError('a bearer-token source needs a token (its connection\'s password)')
        self._token = token

    def __repr__(self) -> str:
        return 'BearerAuth()'

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers['Authorization'] = f'Bearer {self._token}'
        return request
