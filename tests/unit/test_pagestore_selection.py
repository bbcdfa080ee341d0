"""Which page store a deployment uses (PAGE_STORE, PAGE_STORE_CONN_ID), how its settings are
checked, and how keys map to object names and back."""

import pytest

from dataflow.airflow.pagestore import ObjectStoragePageStore, VariablePageStore, key_of, object_name, page_store_for
from dataflow.airflow.tasks import ports_for
from dataflow.errors import ConfigurationError
from dataflow.runs import pagestore
from dataflow.settings import Settings
from tests.support.omis import omis_spec
from tests.support.settings import use_settings


def page_store_settings(**environ):
    config = Settings.from_environ(environ)
    return config.page_store, config.page_store_conn_id


@pytest.mark.parametrize('environ, expected', [
    ({}, ('variables', '')),
    ({'PAGE_STORE': ''}, ('variables', '')),
    ({'PAGE_STORE': ' Variables '}, ('variables', '')),
    ({'PAGE_STORE': 'file:///srv/dataflow/pages'}, ('file:///srv/dataflow/pages', '')),
    ({'PAGE_STORE': 'S3://data-flow-bucket/pages', 'PAGE_STORE_CONN_ID': 'pages_s3'},
     ('s3://data-flow-bucket/pages', 'pages_s3')),
    ({'PAGE_STORE': 's3://data-flow-bucket'}, ('s3://data-flow-bucket', '')),
])
def test_page_store_settings(environ, expected):
    assert page_store_settings(**environ) == expected


@pytest.mark.parametrize('environ, message', [
    ({'PAGE_STORE': 'file://relative/pages'},
     "PAGE_STORE must name an absolute directory, file:///path (three slashes), got 'file://relative/pages'"),
    ({'PAGE_STORE': 'file:pages'},
     "PAGE_STORE must name an absolute directory, file:///path (three slashes), got 'file:pages'"),
    ({'PAGE_STORE': '/srv/pages'},
     "PAGE_STORE must be variables, file:///absolute/directory or s3://bucket/prefix, got '/srv/pages' "
     "(file:///srv/pages?)"),
    ({'PAGE_STORE': 'redis'},
     "PAGE_STORE must be variables, file:///absolute/directory or s3://bucket/prefix, got 'redis'"),
    ({'PAGE_STORE': 'gs://bucket/pages'},
     "PAGE_STORE: unknown scheme 'gs' in 'gs://bucket/pages'; use variables, file:///absolute/directory or "
     's3://bucket/prefix'),
    ({'PAGE_STORE': 's3:///pages'}, "PAGE_STORE must name a bucket, s3://bucket/prefix, got 's3:///pages'"),
    ({'PAGE_STORE': 'file:///srv/pages?mode=fast'},
     "PAGE_STORE must be a URL with no query or fragment, got 'file:///srv/pages?mode=fast'"),
    ({'PAGE_STORE_CONN_ID': 'pages_s3'},
     "PAGE_STORE_CONN_ID is 'pages_s3', but PAGE_STORE is variables: a connection is for an object store "
     '(file:// or s3://)'),
])
def test_a_page_store_setting_it_cannot_use_is_refused_by_name_and_value(environ, message):
    with pytest.raises(ConfigurationError) as error:
        Settings.from_environ(environ)
    assert str(error.value) == message


def test_credentials_in_the_page_store_url_are_refused_without_being_repeated():
    with pytest.raises(ConfigurationError) as error:
        Settings.from_environ({'PAGE_STORE': 's3://AKIAEXAMPLE:wJalrXUtnFEMI@data-flow-bucket/pages'})
    assert str(error.value) == ('PAGE_STORE must not hold credentials or a connection id '
                                '(s3://***@data-flow-bucket/pages); name an Airflow connection in PAGE_STORE_CONN_ID')


def test_variables_are_the_default_store_and_a_url_selects_an_object_store(tmp_path):
    assert isinstance(page_store_for(Settings.from_environ({})), VariablePageStore)
    store = page_store_for(Settings.from_environ({'PAGE_STORE': f'file://{tmp_path}'}))
    assert isinstance(store, ObjectStoragePageStore)
    assert (store.url, store.base.protocol, store.base.conn_id) == (f'file://{tmp_path}', 'file', None)


def test_an_s3_url_selects_s3_through_the_connection_named():
    # Building the store reaches nothing: the connection is looked up at the first call
    # (tests/integration/test_s3_pagestore.py makes those calls).
    store = page_store_for(Settings.from_environ({'PAGE_STORE': 's3://data-flow-bucket/pages',
                                                  'PAGE_STORE_CONN_ID': 'pages_s3'}))
    assert isinstance(store, ObjectStoragePageStore)
    assert (store.url, store.base.protocol, store.base.conn_id) == ('s3://data-flow-bucket/pages', 's3', 'pages_s3')
    assert page_store_for(Settings.from_environ({'PAGE_STORE': 's3://data-flow-bucket'})).base.conn_id is None


def test_the_airflow_tasks_use_the_store_the_settings_select(monkeypatch, tmp_path):
    monkeypatch.setenv('AIRFLOW_CONN_DATASETS_DB', 'postgresql://dataflow@127.0.0.1:5432/datasets')
    assert isinstance(ports_for(omis_spec()).pages, VariablePageStore)
    use_settings(monkeypatch, page_store=f'file://{tmp_path}')
    pages = ports_for(omis_spec()).pages
    assert isinstance(pages, ObjectStoragePageStore) and pages.url == f'file://{tmp_path}'


def test_page_keys_map_to_names_safe_on_a_filesystem_and_s3():
    key = pagestore.page_key(pagestore.run_key('OMISDatasetPipeline', 'manual__2026-01-01T00:00:00+00:00', 1), 12, 2)
    name = object_name(key)
    assert ':' in key and name == key.replace(':', '_3a')
    assert all(c.isascii() and (c.isalnum() or c in '-._') for c in name)
    assert key_of(name) == key


@pytest.mark.parametrize('key', [
    'dataflow-page:0123abcd:000001.1', 'a', '.hidden', '..', 'a.b', 'under_score', '_3a', 'a/b\\c', 'spaces and\ttabs',
    'ünïcödé-ключ-鍵', '~%#?&=+!*\'()@$', 'a' * 200,
])
def test_every_key_round_trips_through_its_object_name(key):
    name = object_name(key)
    assert key_of(name) == key
    assert not name.startswith('.') and '/' not in name and ':' not in name


@pytest.mark.parametrize('name', [
    '', '.dataflow-page_3a0123.1', '.x.0f3a.partial', 'has space', 'a_3A', 'a_2d', 'a_', 'a_zz', 'a:b', 'a_ff',
])
def test_a_name_no_key_maps_to_is_no_key(name):
    assert key_of(name) is None


def test_names_keep_the_order_of_their_keys_prefixes():
    prefix = pagestore.run_key_prefix('Dag/run#0')
    assert object_name(prefix + '000001.1').startswith(object_name(prefix))
    assert not object_name('dataflow-page:ab').startswith(object_name('dataflow-page:abc'))
    with pytest.raises(ValueError, match='must not be empty'):
        object_name('')
