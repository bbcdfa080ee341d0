"""The page stores of a dataset DAG, one per deployment (`page_store_for`, from PAGE_STORE):
Airflow Variables, the default, or objects under a base path of an object store
(dataflow.runs.pagestore says what is stored, and the protocol).

`ObjectStoragePageStore` keeps each key as one object under its base path (Airflow's
`ObjectStoragePath`: `file:///dir` on a filesystem every worker mounts, `s3://bucket/prefix`
through the amazon provider and s3fs, with an optional Airflow connection). Its contract:
- a reader sees a page whole or not at all: on a filesystem a page is written under a
  temporary name and renamed into place; an S3 PUT is atomic;
- `get` of a missing key raises PageMissing naming the key; `delete` of one does nothing;
- `keys(prefix)` lists the stored keys starting with `prefix`, never a write in flight;
- an object's name is its key mapped by `object_name` (one to one, valid on a filesystem
  and on S3): letters, digits and '-' stay, and '.' after the first character; every other
  character (':' of page keys among them) is '_' and the hex of its UTF-8 bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from typing import Any

from airflow.sdk import ObjectStoragePath, Variable
from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

from dataflow.errors import PageMissing
from dataflow.runs.pagestore import PageStore
from dataflow.settings import PAGE_STORE_VARIABLES, Settings


class VariablePageStore:
    def keys(self, prefix: str) -> list[str]:
        return list(Variable.keys(prefix))

    def set(self, key: str, value: str) -> None:
        Variable.set(key, value)

    def get(self, key: str) -> str:
        # Read through the execution API's secrets backend, as Variable.get does, minus
        # the secrets masker: it re-escapes the whole value as a regex on every read to
        # decide whether to mask it, and page values under our keys never are (it was
        # 18% of an ingest task's CPU).
        value = ExecutionAPISecretsBackend().get_variable(key)
        if value is None:
            raise PageMissing(f'page Variable {key} is missing')
        return value

    def delete(self, key: str) -> None:
        Variable.delete(key)


_KEPT = r'A-Za-z0-9\-'
_OBJECT_NAME = re.compile(rf'(?:[{_KEPT}]|_[0-9a-f]{{2}})(?:[{_KEPT}.]|_[0-9a-f]{{2}})*')
_ESCAPED = re.compile(rb'_([0-9a-f]{2})')
# A write in flight is named '.<name>.<random>.partial': no key maps to a name that
# starts with '.' (a key's first '.' is escaped), so `keys` never lists it.
_PARTIAL_SUFFIX = '.partial'


def _escaped(text: str) -> str:
    """`text` as the start of an object name (a key, or the prefix of keys)."""
    out = []
    for index, char in enumerate(text):
        if char.isascii() and (char.isalnum() or char == '-' or (char == '.' and index > 0)):
            out.append(char)
        else:
            out.extend(f'_{byte:02x}' for byte in char.encode('utf-8'))
    return ''.join(out)


def object_name(key: str) -> str:
    """The name of the object that holds `key`: safe on a filesystem and as an S3 key."""
    if not key:
        raise ValueError('a page store key must not be empty')
    return _escaped(key)


def key_of(name: str) -> str | None:
    """The key `object_name` maps to `name`; None for any other name (a write in flight,
    a file someone else put there)."""
    if not _OBJECT_NAME.fullmatch(name):
        return None
    try:
        key = _ESCAPED.sub(lambda m: bytes([int(m[1], 16)]), name.encode('ascii')).decode('utf-8')
    except UnicodeDecodeError:
        return None
    # One name per key: '_2d' is not another name of '-'.
    return key if object_name(key) == name else None


class ObjectStoragePageStore:
    """Each key one object under `url` (file:///dir or s3://bucket/prefix), reached with the
    Airflow connection `conn_id` if given (see the module's docstring)."""

    def __init__(self, url: str, conn_id: str | None = None) -> None:
        self.url = url  # for messages: the conn_id is not part of it
        self.base = ObjectStoragePath(url, conn_id=conn_id)
        self.local = self.base.protocol in ('file', 'local')
        self._directory = self.base.path.rstrip('/')
        self._directory_made = False

    def __repr__(self) -> str:
        return f'ObjectStoragePageStore({self.url!r})'

    @property
    def _fs(self) -> Any:
        # The fsspec filesystem itself (attached once per process and connection), not
        # ObjectStoragePath's file wrappers: those record a lineage asset on every read
        # and write, which a page is not.
        return self.base.fs

    def _path(self, name: str) -> str:
        return f'{self._directory}/{name}'

    def set(self, key: str, value: str) -> None:
        data = value.encode('utf-8')
        path = self._path(object_name(key))
        if not self.local:
            self._fs.pipe_file(path, data)  # one PUT: readers see the old object or the new one
            return
        if not self._directory_made:
            os.makedirs(self._directory, exist_ok=True)
            self._directory_made = True
        # Beside the page, so that the rename stays on one filesystem; unique, so that two
        # writers of a key never write one temporary file.
        partial = self._path(f'.{object_name(key)}.{uuid.uuid4().hex}{_PARTIAL_SUFFIX}')
        try:
            self._fs.pipe_file(partial, data)
            # rename(2): readers see the old file or the whole new one, never a part
            # (fsspec's mv is shutil.move, which would copy where it cannot rename).
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise

    def get(self, key: str) -> str:
        try:
            data: bytes = self._fs.cat_file(self._path(object_name(key)))
        except FileNotFoundError:
            raise PageMissing(f'page {key} is missing from the page store {self.url}') from None
        return data.decode('utf-8')

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._path(object_name(key)))

    def keys(self, prefix: str) -> list[str]:
        # Listings are cached by some filesystems (s3fs); the pages are written by other processes.
        self._fs.invalidate_cache(self._directory)
        try:
            entries = self._fs.ls(self._directory, detail=True)
        except FileNotFoundError:
            return []
        wanted = _escaped(prefix)  # a key's name starts with its prefix's
        found = []
        for entry in entries:
            name = entry['name'].rstrip('/').rsplit('/', 1)[-1]
            if entry.get('type') == 'file' and name.startswith(wanted):
                key = key_of(name)
                if key is not None:
                    found.append(key)
        return sorted(found)


def page_store_for(config: Settings) -> PageStore:
    """The page store PAGE_STORE and PAGE_STORE_CONN_ID select (dataflow.settings checks them)."""
    if config.page_store == PAGE_STORE_VARIABLES:
        return VariablePageStore()
    return ObjectStoragePageStore(config.page_store, conn_id=config.page_store_conn_id or None)
