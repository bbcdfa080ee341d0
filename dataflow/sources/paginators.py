"""How a page's records and the next page are found in a response document."""

from __future__ import annotations

import urllib.parse
from typing import Any


class NextUrlPaginator:
    """`{"next": URL or null, "results": [...]}`, as Django REST Framework sends it (Data
    Hub's cursor pagination adds "previous", which is not needed). A relative `next` is
    read against the page's URL."""

    def __repr__(self) -> str:
        return 'NextUrlPaginator()'

    def parse(self, url: str, document: Any) -> tuple[list[Any], str | None]:
        if not isinstance(document, dict) or not isinstance(document.get('results'), list):
            raise ValueError('response is not {"next": ..., "results": [...]}')
        next_url = document.get('next')
        if next_url is not None:
            if not isinstance(next_url, str) or not next_url:
                raise ValueError(f'"next" must be a URL or null, got {next_url!r:.80}')
            next_url = urllib.parse.urljoin(url, next_url)
        return document['results'], next_url
