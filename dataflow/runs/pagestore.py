"""How fetch hands pages to ingest: a PageStore (the seam) holding values under keys of
their run, and the codec of what is stored.

Stores (dataflow.airflow.pagestore, chosen by PAGE_STORE): Airflow Variables, the default
(every call is a round trip through the api-server, so calls and bytes decide the hand-off's
speed), or objects in a directory or on S3; and memory (`MemoryPageStore`, for one
process). A page is stored as the COPY text of its mapped columns (rendered by fetch),
zstd-compressed and base64-encoded; a value holds one page or several consecutive ones
(`join_pages`), each its own zstd frame.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Protocol

import zstandard

from dataflow.errors import PageMissing

# Keys hold no word Airflow's secrets masker treats as sensitive ('token', 'secret',
# 'dsn', ...): a get of such a key masks every later log line against the whole value.
PAGE_KEY_PREFIX = 'dataflow-page'
_CODEC = 'zstd'
_ZSTD_LEVEL = 3


class PageStore(Protocol):
    def set(self, key: str, value: str) -> None: ...

    def get(self, key: str) -> str:
        """The value stored under `key`; PageMissing when there is none."""

    def delete(self, key: str) -> None:
        """Forget `key`; nothing happens when it is not there."""

    def keys(self, prefix: str) -> list[str]: ...


class MemoryPageStore:
    """Pages in this process's memory: the one-process runner, and tests."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.sets = self.gets = 0
        self._lock = threading.Lock()

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self.values[key] = value
            self.sets += 1

    def get(self, key: str) -> str:
        with self._lock:
            self.gets += 1
            try:
                return self.values[key]
            except KeyError:
                raise PageMissing(f'page {key} is missing') from None

    def delete(self, key: str) -> None:
        with self._lock:
            self.values.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return [k for k in self.values if k.startswith(prefix)]


def run_key(pipeline: str, run_id: str, clear_number: int | None) -> str:
    """Identifies one attempt at a run of a pipeline (an Airflow DAG run: clearing the whole
    run starts a new attempt)."""
    return f'{pipeline}/{run_id}#{clear_number or 0}'


def run_key_prefix(run: str) -> str:
    """What every page key of a run starts with (cleanup sweeps by it)."""
    digest = hashlib.sha256(run.encode('utf-8')).hexdigest()[:16]
    return f'{PAGE_KEY_PREFIX}:{digest}:'


def page_key(run: str, page_number: int, attempt: int) -> str:
    """The key of a page, stored by fetch try `attempt`: a stale try that stores the same
    page never overwrites the value the ledger points at (cleanup sweeps its own)."""
    return f'{run_key_prefix(run)}{page_number:06d}.{attempt}'


def encode_page(payload: bytes) -> str:
    """A page's COPY text (bytes) as a stored value (text)."""
    # A zstd (de)compressor object is not thread-safe: one per call (it costs microseconds).
    compressed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(payload)
    return f'{_CODEC}:' + base64.b64encode(compressed).decode('ascii')


def join_pages(values: list[str]) -> str:
    """One stored value holding consecutive pages encoded by `encode_page`, in order: each
    page stays its own zstd frame (base64 has no ','), so joining costs no recompression."""
    prefix = f'{_CODEC}:'
    return prefix + ','.join(value.removeprefix(prefix) for value in values)


def decode_page(value: str | None, key: str) -> bytes:
    """The COPY text of a page (or of the pages, one after another) stored by
    `encode_page` (`join_pages`)."""
    codec, _, encoded = (value or '').partition(':')
    if codec != _CODEC:
        raise PageMissing(f'{key} does not hold a page stored by data-flow (codec {codec!r})')
    decompressor = zstandard.ZstdDecompressor()
    return b''.join(decompressor.decompress(base64.b64decode(part)) for part in encoded.split(','))
