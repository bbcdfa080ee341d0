"""How fetch hands pages to the ingest tasks: one Airflow Variable per page.

Every Variable call is an HTTP round trip through the api-server (and a pass through its
secrets masker), so the bytes stored decide the hand-off's speed. A page is stored as the
COPY text of its mapped columns (rendered by fetch), zstd-compressed and base64-encoded:
for 1000 OMIS records, 51 KB instead of 889 KB of JSON (210 KB as zlib-compressed JSON).
Keys are unique to a run.
"""

import base64
import hashlib

import zstandard

from dataflow.errors import DataflowError

# Keys hold no word the secrets masker treats as sensitive ('token', 'secret', 'dsn', ...):
# a get of such a key masks every later log line against the whole value (~1.2 s a page).
PAGE_KEY_PREFIX = 'dataflow-page'
_CODEC = 'zstd'
_ZSTD_LEVEL = 3


def run_key(dag_id, run_id, clear_number):
    """Identifies one attempt at a DAG run: clearing the whole run starts a new one."""
    return f'{dag_id}/{run_id}#{clear_number or 0}'


def run_key_prefix(run):
    """What every page key of a run starts with (cleanup sweeps by it)."""
    digest = hashlib.sha256(run.encode('utf-8')).hexdigest()[:16]
    return f'{PAGE_KEY_PREFIX}:{digest}:'


def page_key(run, page_number):
    return f'{run_key_prefix(run)}{page_number:06d}'


def encode_page(payload):
    """A page's COPY text (bytes) as a Variable value (text)."""
    # A zstd (de)compressor object is not thread-safe: one per call (it costs microseconds).
    compressed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(payload)
    return f'{_CODEC}:' + base64.b64encode(compressed).decode('ascii')


def decode_page(value, key):
    """The COPY text of a page stored by `encode_page`."""
    codec, _, encoded = (value or '').partition(':')
    if codec != _CODEC:
        raise DataflowError(f'Variable {key} does not hold a page stored by data-flow (codec {codec!r})')
    return zstandard.ZstdDecompressor().decompress(base64.b64decode(encoded))
