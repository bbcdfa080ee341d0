"""How fetch hands pages to the ingest tasks: one Airflow Variable per page.

The value is the source's own response body (already verified by the Hawk client),
compressed and base64-encoded: every Variable call is an HTTP round trip through the
api-server, so the bytes moved decide the hand-off's speed. Keys are unique to a run.
"""

import base64
import hashlib
import zlib

import orjson

from dataflow.errors import DataflowError

PAGE_KEY_PREFIX = 'dataflow-page'
# zlib level 1: most of level 9's size reduction on JSON, at a fraction of the CPU.
_CODEC = 'z1'
_COMPRESSION_LEVEL = 1


def run_key(dag_id, run_id, clear_number):
    """Identifies one attempt at a DAG run: clearing the whole run starts a new one."""
    return f'{dag_id}/{run_id}#{clear_number or 0}'


def page_key(run, page_number):
    digest = hashlib.sha256(run.encode('utf-8')).hexdigest()[:16]
    return f'{PAGE_KEY_PREFIX}:{digest}:{page_number:06d}'


def encode_page(body):
    """A verified response body as a Variable value (text)."""
    return f'{_CODEC}:' + base64.b64encode(zlib.compress(body, _COMPRESSION_LEVEL)).decode('ascii')


def decode_page(value, key):
    """The records of a page stored by `encode_page`."""
    codec, _, payload = (value or '').partition(':')
    if codec != _CODEC:
        raise DataflowError(f'Variable {key} does not hold a page stored by data-flow (codec {codec!r})')
    return orjson.loads(zlib.decompress(base64.b64decode(payload)))['results']
