"""ObjectStoragePageStore on a real directory (file://): the PageStore contract, writes that
no reader sees half done, and a whole run in one process that leaves the directory empty.
(S3: test_s3_pagestore.py.)"""

import os
import threading

import pytest

from dataflow.airflow import pagestore as airflow_pagestore
from dataflow.airflow.pagestore import ObjectStoragePageStore, object_name
from dataflow.errors import PageMissing
from dataflow.runs import pagestore
from tests.support.pagestores import load_omis_in_one_process, set_get_delete_and_keys

RUN = pagestore.run_key('OMISDatasetPipeline', 'run-1', 0)


@pytest.fixture
def directory(tmp_path):
    return tmp_path / 'pages'  # not there yet: the first write makes it


@pytest.fixture
def store(directory):
    return ObjectStoragePageStore(f'file://{directory}')


def test_set_get_delete_and_keys(store, directory):
    left = set_get_delete_and_keys(store, RUN)
    assert sorted(os.listdir(directory)) == sorted(object_name(k) for k in left)


def test_each_key_is_one_file_named_by_its_mapped_key(store, directory):
    key = pagestore.page_key(RUN, 7, 2)
    store.set(key, 'zstd:abc')
    [name] = os.listdir(directory)
    assert name == object_name(key) and ':' not in name
    assert (directory / name).read_bytes() == b'zstd:abc'


def test_a_missing_key_is_page_missing_naming_it(store, directory):
    key = pagestore.page_key(RUN, 3, 1)
    with pytest.raises(PageMissing, match=f'^page {key} is missing from the page store file://{directory}$'):
        store.get(key)
    assert store.keys('') == []  # no directory yet
    store.set(pagestore.page_key(RUN, 4, 1), 'zstd:x')
    with pytest.raises(PageMissing, match=key):
        store.get(key)


def test_other_stores_on_the_same_directory_see_the_same_pages(store, directory):
    key = pagestore.page_key(RUN, 0, 1)
    store.set(key, 'zstd:shared')
    other = ObjectStoragePageStore(f'file://{directory}/')
    assert other.get(key) == 'zstd:shared' and other.keys(pagestore.run_key_prefix(RUN)) == [key]
    other.delete(key)
    assert store.keys('') == []


def test_keys_list_only_keys_never_other_files_or_writes_in_flight(store, directory):
    key = pagestore.page_key(RUN, 0, 1)
    store.set(key, 'zstd:a')
    (directory / 'README').write_text('not a page')
    (directory / f'.{object_name(key)}.0123.partial').write_text('zstd:half')
    (directory / object_name(pagestore.run_key_prefix(RUN) + 'dir')).mkdir()
    assert store.keys(pagestore.run_key_prefix(RUN)) == [key]
    assert store.keys('') == sorted([key, 'README'])  # README is a valid name: its own key


def test_a_write_is_renamed_into_place_whole(store, directory, monkeypatch):
    key = pagestore.page_key(RUN, 0, 1)
    store.set(key, 'zstd:old')
    seen = {}
    rename = os.replace

    def observed(source, target):
        # The new value is complete under its temporary name, and not yet visible.
        seen['partial'] = open(source).read()
        seen['get'] = store.get(key)
        seen['keys'] = store.keys('')
        rename(source, target)

    monkeypatch.setattr(airflow_pagestore.os, 'replace', observed)
    store.set(key, 'zstd:new')
    assert seen == {'partial': 'zstd:new', 'get': 'zstd:old', 'keys': [key]}
    assert store.get(key) == 'zstd:new' and os.listdir(directory) == [object_name(key)]


def test_a_write_that_fails_leaves_the_old_value_and_no_partial_file(store, directory, monkeypatch):
    key = pagestore.page_key(RUN, 0, 1)
    store.set(key, 'zstd:old')

    def half_written(path, data):
        with open(path, 'wb') as handle:
            handle.write(data[:3])
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(store._fs, 'pipe_file', half_written)
    with pytest.raises(OSError, match='No space left'):
        store.set(key, 'zstd:new')
    monkeypatch.undo()
    assert store.get(key) == 'zstd:old' and os.listdir(directory) == [object_name(key)]


def test_a_reader_never_sees_part_of_a_page_being_rewritten(store):
    key = pagestore.page_key(RUN, 0, 1)
    values = [f'zstd:{n}'.ljust(1 << 20, str(n)) for n in range(2)]  # 1 MB each
    store.set(key, values[0])
    done, wrong = threading.Event(), []

    def read():
        while not done.is_set():
            value = store.get(key)
            if value not in values:
                wrong.append(len(value))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(60):
            store.set(key, values[n % 2])
    finally:
        done.set()
        reader.join()
    assert wrong == []


def test_a_run_in_one_process_hands_its_pages_over_on_disk_and_leaves_none(source, hawk_client, datasets_dsn,
                                                                            datasets_conn, store, directory):
    load_omis_in_one_process(store, source, hawk_client, datasets_dsn, datasets_conn)
    assert os.listdir(directory) == []  # written (the directory was made), then every page deleted
