"""What the tests of each page store share: the PageStore contract exercised the same way,
and a whole run in one process through a store."""

from dataflow.runs import local, pagestore
from devstack.datahub_records import omis_record
from tests.support.expected import expected_rows, table_rows
from tests.support.omis import omis_spec
from tests.support.postgres import leftover_tables
from tests.support.runs import ports


def set_get_delete_and_keys(store, run):
    """Set, get, overwrite, delete (twice: a missing key does nothing) and list keys of
    `run` and of another run; the keys left stored, sorted."""
    keys = [pagestore.page_key(run, n, 1) for n in range(3)]
    other = pagestore.page_key(pagestore.run_key('OtherPipeline', 'run-1', 0), 0, 1)
    for n, key in enumerate(keys + [other]):
        store.set(key, f'zstd:page-{n}')
    assert [store.get(key) for key in keys] == ['zstd:page-0', 'zstd:page-1', 'zstd:page-2']
    assert store.keys(pagestore.run_key_prefix(run)) == keys
    assert store.keys('') == sorted(keys + [other])

    store.set(keys[0], 'zstd:page-0 again')
    assert store.get(keys[0]) == 'zstd:page-0 again'
    store.delete(keys[0])
    store.delete(keys[0])  # a missing key: nothing happens
    assert store.keys(pagestore.run_key_prefix(run)) == keys[1:]
    return sorted(keys[1:] + [other])


def load_omis_in_one_process(store, source, hawk_client, datasets_dsn, datasets_conn):
    """Run OMIS (250 records, 3 pages) in one process with `store` handing the pages over,
    and check the table it made against the source."""
    source.omis.put(*(omis_record(i) for i in range(250)))
    spec = omis_spec()
    result = local.run(spec, ports(datasets_dsn, hawk_client, store), 'run-1')
    assert (result.pages, result.rows) == (3, 250)
    assert table_rows(datasets_conn, spec) == expected_rows(spec, source.omis.records())
    assert leftover_tables(datasets_conn) == []
