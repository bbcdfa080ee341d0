"""ObjectStoragePageStore on S3 (s3://bucket/prefix), reached as a deployment reaches it: through
the Airflow connection PAGE_STORE_CONN_ID names, an `aws` one whose extra holds endpoint_url,
region and keys. The PageStore contract (set, get, delete, keys; a missing key is PageMissing
naming it; deleting one does nothing), keys with ':' stored under names without, pages of a
megabyte byte for byte, `page_store_for` building the store from the settings, and a whole run
in one process that leaves no object behind.

The S3 here is moto's S3 server, started in this process on 127.0.0.1 (no real S3 is reachable
from the development machines or CI): it speaks S3's REST API to s3fs as AWS would, but it is a
stand-in, not AWS. Each test has a bucket of its own, emptied and deleted afterwards; the server
stops after the module.

The connection is an AIRFLOW_CONN_<ID> environment variable (JSON form). Outside a task
(no supervisor), the task SDK looks connections up in the environment variables backend and
the configured external backends (airflow.sdk.execution_time.supervisor.ensure_secrets_backend_loaded),
so the amazon provider's S3Hook finds it exactly as a worker finds one set in its environment.
"""

import json
import logging
import threading
import uuid

import boto3
import pytest
from airflow.sdk import ObjectStoragePath
from moto.server import ThreadedMotoServer

from dataflow.airflow.pagestore import ObjectStoragePageStore, object_name, page_store_for
from dataflow.errors import PageMissing
from dataflow.runs import pagestore
from dataflow.settings import Settings
from tests.support.pagestores import load_omis_in_one_process, set_get_delete_and_keys

RUN = pagestore.run_key('OMISDatasetPipeline', 'run-1', 0)
PREFIX = 'pages'
REGION = 'us-east-1'  # moto's default: a bucket there needs no LocationConstraint
KEYS = {'aws_access_key_id': 'moto-test-key', 'aws_secret_access_key': 'moto-test-secret'}  # moto takes any


@pytest.fixture(scope='module')
def endpoint_url():
    """moto's S3 server on a port the system picks (port 0: no window between probing a port
    and binding it)."""
    werkzeug_log = logging.getLogger('werkzeug')
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # a line per request would bury a failure's report
    server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f'http://{host}:{port}'
    finally:
        server.stop()
        werkzeug_log.setLevel(level)


@pytest.fixture(scope='module')
def conn_id(endpoint_url):
    """An `aws` Airflow connection to the server, as AIRFLOW_CONN_<ID>. Its id is new each
    time: Airflow keeps an attached filesystem per protocol and connection id for the life of
    the process, which would outlive this module's server."""
    conn_id = f'page_store_s3_{uuid.uuid4().hex[:8]}'
    extra = {'endpoint_url': endpoint_url, 'region_name': REGION, **KEYS}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(f'AIRFLOW_CONN_{conn_id.upper()}', json.dumps({'conn_type': 'aws', 'extra': extra}))
        yield conn_id


@pytest.fixture(scope='module', autouse=True)
def attached(conn_id):
    """The S3 filesystem of the connection, attached once from a thread of its own. The amazon
    provider attaches it with asyncio.run(), which refuses to run in a thread where an event
    loop is running, as there is in this test process once the browser tests have run
    (Playwright's); a task process runs none. Airflow keeps the attached filesystem for the
    protocol and connection, so the tests' stores find it attached."""
    failed = []

    def attach():
        try:
            ObjectStoragePath('s3://any-bucket/', conn_id=conn_id).fs
        except Exception as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    thread = threading.Thread(target=attach)
    thread.start()
    thread.join(60)
    assert not failed and not thread.is_alive(), failed


@pytest.fixture(scope='module')
def s3(endpoint_url):
    """A boto3 client of the server: what the tests use to look behind the store."""
    return boto3.client('s3', endpoint_url=endpoint_url, region_name=REGION, **KEYS)


@pytest.fixture
def bucket(s3):
    name = f'data-flow-pages-{uuid.uuid4().hex[:12]}'
    s3.create_bucket(Bucket=name)
    yield name
    for found in s3.get_paginator('list_objects_v2').paginate(Bucket=name):
        for item in found.get('Contents', []):
            s3.delete_object(Bucket=name, Key=item['Key'])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def store(bucket, conn_id):
    return ObjectStoragePageStore(f's3://{bucket}/{PREFIX}', conn_id=conn_id)


def objects(s3, bucket):
    """Every object key in `bucket`, as S3 lists them."""
    return sorted(item['Key'] for item in s3.list_objects_v2(Bucket=bucket).get('Contents', []))


def test_set_get_delete_and_keys(store, s3, bucket):
    left = set_get_delete_and_keys(store, RUN)
    assert objects(s3, bucket) == sorted(f'{PREFIX}/{object_name(k)}' for k in left)


def test_keys_with_colons_are_objects_without_and_map_back(store, s3, bucket):
    key = pagestore.page_key(RUN, 7, 2)
    assert ':' in key
    store.set(key, 'zstd:abc')
    [stored] = objects(s3, bucket)
    assert stored == f'{PREFIX}/{object_name(key)}' and ':' not in stored
    assert s3.get_object(Bucket=bucket, Key=stored)['Body'].read() == b'zstd:abc'

    # The other way: an object put under a mapped name is the key it maps from.
    written = pagestore.page_key(RUN, 8, 1)
    s3.put_object(Bucket=bucket, Key=f'{PREFIX}/{object_name(written)}', Body=b'zstd:def')
    assert store.keys(pagestore.run_key_prefix(RUN)) == [key, written]
    assert store.get(written) == 'zstd:def'


def test_keys_list_only_keys_under_the_prefix(store, s3, bucket):
    key = pagestore.page_key(RUN, 0, 1)
    store.set(key, 'zstd:a')
    for other in (f'{PREFIX}/.{object_name(key)}.0123.partial',  # no key maps to a name starting with '.'
                  f'{PREFIX}/{object_name(pagestore.run_key_prefix(RUN))}sub/page',  # below the prefix: not a page
                  f'{PREFIX}-other/{object_name(key)}', object_name(key)):  # beside the prefix
        s3.put_object(Bucket=bucket, Key=other, Body=b'zstd:not here')
    assert store.keys(pagestore.run_key_prefix(RUN)) == [key]
    assert store.keys('') == [key]


def test_a_missing_key_is_page_missing_naming_it(store, bucket):
    key = pagestore.page_key(RUN, 3, 1)
    with pytest.raises(PageMissing, match=f'^page {key} is missing from the page store s3://{bucket}/{PREFIX}$'):
        store.get(key)
    assert store.keys('') == []  # nothing under the prefix yet
    store.set(pagestore.page_key(RUN, 4, 1), 'zstd:x')
    with pytest.raises(PageMissing, match=key):
        store.get(key)


def test_deleting_a_missing_key_does_nothing(store, s3, bucket):
    key = pagestore.page_key(RUN, 0, 1)
    store.delete(key)  # nothing stored at all
    store.set(key, 'zstd:a')
    store.delete(key)
    store.delete(key)  # deleted already
    assert store.keys('') == [] and objects(s3, bucket) == []


def test_a_page_of_a_megabyte_round_trips_byte_for_byte(store, s3, bucket):
    key = pagestore.page_key(RUN, 0, 1)
    # Varied text, not one repeated character: control characters, ASCII, two-, three- and
    # four-byte UTF-8.
    alphabet = ''.join(chr(c) for c in range(1, 0x250)) + 'ключ鍵🙂'
    value = 'zstd:' + (alphabet * (1 + (1 << 20) // len(alphabet)))[:1 << 20]
    store.set(key, value)
    assert store.get(key) == value
    [stored] = objects(s3, bucket)
    assert s3.get_object(Bucket=bucket, Key=stored)['Body'].read() == value.encode('utf-8')
    store.set(key, value[::-1])  # a rewrite replaces the whole object
    assert store.get(key) == value[::-1]


def test_page_store_for_builds_the_s3_store_from_the_settings(bucket, conn_id, store):
    selected = page_store_for(Settings.from_environ({'PAGE_STORE': f'S3://{bucket}/{PREFIX}/',
                                                     'PAGE_STORE_CONN_ID': conn_id}))
    assert isinstance(selected, ObjectStoragePageStore)
    assert (selected.url, selected.base.protocol, selected.base.conn_id) == (f's3://{bucket}/{PREFIX}/', 's3',
                                                                             conn_id)
    key = pagestore.page_key(RUN, 0, 1)
    selected.set(key, 'zstd:shared')
    assert store.get(key) == 'zstd:shared' and store.keys('') == [key]  # one store, whichever way it was made
    store.delete(key)
    assert selected.keys('') == []

    # s3://bucket alone: the pages are the bucket's top-level objects.
    whole_bucket = page_store_for(Settings.from_environ({'PAGE_STORE': f's3://{bucket}',
                                                         'PAGE_STORE_CONN_ID': conn_id}))
    whole_bucket.set(key, 'zstd:top')
    assert whole_bucket.get(key) == 'zstd:top' and whole_bucket.keys('') == [key] and store.keys('') == []
    whole_bucket.delete(key)


def test_a_run_in_one_process_hands_its_pages_over_through_s3_and_leaves_none(source, hawk_client, datasets_dsn,
                                                                              datasets_conn, store, s3, bucket,
                                                                              monkeypatch):
    written, store_set = [], store.set

    def recorded(key, value):
        store_set(key, value)
        written.append(objects(s3, bucket))  # what the bucket holds once a set returns

    monkeypatch.setattr(store, 'set', recorded)
    load_omis_in_one_process(store, source, hawk_client, datasets_dsn, datasets_conn)
    assert written and all(held for held in written)  # the pages went through the bucket,
    assert objects(s3, bucket) == []  # and every one was deleted
