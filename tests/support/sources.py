"""Sources the tests read: the credentials their demo sources and clients share (never a
real deployment's), and clients configured as a deployment configures them."""

from dataflow.sources.hawk import HawkAuth
from dataflow.sources.http import PagedJsonClient
from dataflow.sources.paginators import NextUrlPaginator

TEST_HAWK_ID = 'test-hawk-id'
TEST_HAWK_KEY = 'test-hawk-key-3f9a8b7c6d5e4f3a2b1c'


def hawk_client(hawk_id: str = TEST_HAWK_ID, hawk_key: str = TEST_HAWK_KEY, algorithm: str = 'sha256', *,
                base_url: str = '', connect_timeout: float = 10.0, read_timeout: float = 5.0, max_attempts: int = 3,
                backoff_base: float = 0.01, backoff_max: float = 0.05, **kwargs: object) -> PagedJsonClient:
    """A Hawk-signed `{next, results}` client of the source at `base_url`, with quick retries."""
    return PagedJsonClient(HawkAuth(hawk_id, hawk_key, algorithm), NextUrlPaginator(), base_url=base_url,
                           name='test-source', connect_timeout=connect_timeout, read_timeout=read_timeout,
                           max_attempts=max_attempts, backoff_base=backoff_base, backoff_max=backoff_max,
                           **kwargs)  # type: ignore[arg-type]
