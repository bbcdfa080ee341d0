"""The steps of a dataset run, run in-process against the real PostgreSQL and demo source,
with pages kept in memory instead of Airflow Variables. tests/e2e runs the same steps as
tasks on a real Airflow scheduler and Celery worker."""

import dataclasses
import re
import threading
import time

import psycopg2
import psycopg2.errorcodes
import pytest

from dataflow.errors import FetchFailed, FetchSuperseded, RecordError, RunNotSwapped, SourceError, SwapError
from dataflow.load import catalog
from dataflow.runs import ledger, pagestore, steps
from dataflow.runs.pagestore import MemoryPageStore
from devstack.datahub_records import omis_record
from devstack.source_api import Hold
from tests.support.omis import omis_spec, paged_last
from tests.support.postgres import leftover_tables
from tests.support.runs import ports
from tests.support.settings import use_settings
from tests.support.sources import hawk_client


class Steps:
    """The steps of one pipeline, each with ports over this test's database and source."""

    def __init__(self, spec, dsn, source_url):
        self.spec, self.dsn, self.source_url = spec, dsn, source_url

    def ports(self, store=None):
        return ports(self.dsn, client(self.source_url), store if store is not None else MemoryPageStore())

    def check(self, run):
        return steps.check_if_table_exists(self.spec, run, self.ports())

    def create(self, run):
        return steps.create_target_table(self.spec, run, self.ports())

    def fetch(self, run, store):
        return steps.fetch(self.spec, run, self.ports(store))

    def ingest(self, run, store, **kwargs):
        return steps.ingest(self.spec, run, self.ports(store), **kwargs)

    def publish(self, run):
        return steps.publish(self.spec, run, self.ports())

    def cleanup(self, run, store):
        return steps.cleanup(self.spec, run, self.ports(store))


@pytest.fixture
def spec(source):
    return omis_spec()


@pytest.fixture
def one_page_per_value(monkeypatch):
    """Each page stored as a value of its own, at once: for tests of what happens to a
    given page (batches: the tests of _PageStorer below)."""
    monkeypatch.setattr(steps._PageStorer, 'MIN_BATCH', 1)
    monkeypatch.setattr(steps._PageStorer, 'BATCH_PAGES', 1)


@pytest.fixture
def do(spec, datasets_dsn, source):
    return Steps(spec, datasets_dsn, source.url)


def run_context(try_number=1, max_tries=3, label='test', key='OMISDatasetPipeline/manual__1#0'):
    return steps.RunContext(key, try_number, max_tries, label)


def client(base_url):
    return hawk_client(base_url=base_url, max_attempts=1, backoff_base=0.01, read_timeout=5)


def loaded_rows(conn):
    with conn.cursor() as cursor:
        cursor.execute('SELECT omis_order_reference, company_name, net_price FROM omis_dataset ORDER BY 1')
        rows = cursor.fetchall()
    conn.commit()
    return rows


def source_rows(source):
    return sorted((r['reference'], r['company__name'], r['subtotal_cost']) for r in source.omis.records())


def run_all(do, run, store, ingest_tasks=3):
    """fetch alongside check -> create -> ingest x N (threads) -> swap -> cleanup."""
    errors = []

    def guarded(function, *args):
        try:
            function(*args)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    fetcher = threading.Thread(target=guarded, args=(do.fetch, run, store))
    fetcher.start()
    do.check(run)
    do.create(run)
    loaders = [threading.Thread(target=guarded, args=(do.ingest, run, store)) for _ in range(ingest_tasks)]
    for thread in loaders:
        thread.start()
    for thread in [fetcher, *loaders]:
        thread.join()
    if errors:
        raise errors[0]
    summary = do.publish(run)
    do.cleanup(run, store)
    return summary


def test_concurrent_ingest_loads_every_page_exactly_once(do, spec, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(2050)))
    store = MemoryPageStore()
    summary = run_all(do, run_context(), store)
    assert summary['rows_after'] == 2050 and summary['rows_before'] is None
    assert loaded_rows(datasets_conn) == source_rows(source)
    # Each stored value (a page, or pages that queued up while storing was behind) is read once.
    assert store.values == {} and store.gets == store.sets and 21 / steps._PageStorer.BATCH_PAGES <= store.sets <= 21
    assert leftover_tables(datasets_conn) == []
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM dataflow.pages')
        assert cursor.fetchone() == (0,)
        cursor.execute('SELECT swapped_at IS NOT NULL, finished_at IS NOT NULL, pages, rows FROM dataflow.runs')
        assert cursor.fetchall() == [(True, True, 21, 2050)]
        cursor.execute('SELECT h.table_name, h.pipeline, h.rows_before, h.rows_after, h.source_url, '
                       'h.started_at = r.created_at, h.finished_at >= h.started_at '
                       'FROM dataflow.load_history h JOIN dataflow.runs r USING (run_key)')
        assert cursor.fetchall() == [('omis_dataset', 'OMISDatasetPipeline', None, 2050, source.omis.url, True, True)]
    datasets_conn.commit()


class HeldFirstSet(MemoryPageStore):
    """Holds the first store until released, and records how many pages each value held."""

    def __init__(self):
        super().__init__()
        self.released, self.pages_per_value = threading.Event(), []

    def set(self, key, value):
        self.pages_per_value.append(value.count(',') + 1)
        if len(self.pages_per_value) == 1:
            assert self.released.wait(60)
        super().set(key, value)


def test_pages_that_queue_up_while_storing_is_behind_are_stored_as_one_value(do, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(2050)))  # 21 pages
    store = HeldFirstSet()
    queued = steps._PageStorer.QUEUE_PAGES

    def release_when_the_queue_is_full():
        # While the first batch (pages 0..k-1) is being stored, fetch queues pages
        # k..k+QUEUE_PAGES-1 and then asks for the next page, which it cannot queue.
        wait_for(lambda: store.pages_per_value and source.omis.requests[store.pages_per_value[0] + queued])
        store.released.set()

    threading.Thread(target=release_when_the_queue_is_full, daemon=True).start()
    summary = run_all(do, run_context(), store)
    assert summary['rows_after'] == 2050
    assert loaded_rows(datasets_conn) == source_rows(source)
    assert store.pages_per_value[1] == steps._PageStorer.BATCH_PAGES
    assert sum(store.pages_per_value) == 21 and store.gets == store.sets == len(store.pages_per_value)


def test_pages_are_stored_at_least_min_batch_at_a_time_until_the_source_ends(do, source, datasets_conn, monkeypatch):
    monkeypatch.setattr(steps._PageStorer, 'MAX_WAIT_SECONDS', 120.0)  # never the reason here
    source.omis.put(*(omis_record(i) for i in range(2050)))  # 21 pages
    store = HeldFirstSet()
    store.released.set()
    run_all(do, run_context(), store)
    assert loaded_rows(datasets_conn) == source_rows(source)
    assert all(pages >= steps._PageStorer.MIN_BATCH for pages in store.pages_per_value[:-1])
    assert sum(store.pages_per_value) == 21 and len(store.pages_per_value) <= 21 // steps._PageStorer.MIN_BATCH + 1


def test_a_slow_sources_page_is_stored_after_max_wait_without_the_pages_after_it(do, source, datasets_conn,
                                                                                   monkeypatch):
    monkeypatch.setattr(steps._PageStorer, 'MAX_WAIT_SECONDS', 0.2)
    source.omis.put(*(omis_record(i) for i in range(250)))  # 3 pages
    second_page = Hold()
    source.omis.fail_next(1, second_page)
    store = HeldFirstSet()
    store.released.set()
    fetching = threading.Thread(target=do.fetch, args=(run_context(), store))
    fetching.start()
    try:
        second_page.wait_reached(60)
        wait_for(lambda: store.sets == 1)  # page 0, alone, while page 1 is still on its way
        assert store.pages_per_value == [1]
    finally:
        second_page.release()
    fetching.join(60)
    assert store.pages_per_value == [1, 2] and not fetching.is_alive()


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.01)


def test_a_second_run_replaces_the_table(do, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(300)))
    run_all(do, run_context(key='r/1#0'), MemoryPageStore())
    source.omis.remove(*(omis_record(i)['reference'] for i in range(0, 300, 3)))
    source.omis.put(*(omis_record(i, version=2) for i in range(1, 300, 3)), *(omis_record(i) for i in range(300, 420)))
    summary = run_all(do, run_context(key='r/2#0'), MemoryPageStore())
    assert (summary['rows_before'], summary['rows_after']) == (300, 320)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_fetch_retry_resumes_after_the_last_stored_page(one_page_per_value, do, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(450)))
    store, run = MemoryPageStore(), run_context(try_number=1, max_tries=2)
    do.create(run)
    source.omis.fail_next(2, 503)
    with pytest.raises(SourceError, match=re.escape(source.omis.page_url(2)) + ': gave up after 1 attempts: HTTP 503'):
        do.fetch(run, store)
    state = ledger.get_run(datasets_conn, run.run_key)
    assert state.fetch_state == ledger.FETCH_RETRYING and 'HTTP 503' in state.fetch_error
    assert len(store.values) == 2

    summary = do.fetch(run_context(try_number=2, max_tries=2), store)
    assert (summary['pages'], summary['rows']) == (5, 450)
    assert dict(source.omis.requests) == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    do.ingest(run, store)
    do.publish(run)
    do.cleanup(run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_ingest_stops_when_fetch_fails_for_good(do, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(150)))
    store, run = MemoryPageStore(), run_context(try_number=3, max_tries=3)
    do.create(run)
    source.omis.fail_next(1, 500)
    with pytest.raises(SourceError):
        do.fetch(run, store)
    with pytest.raises(FetchFailed, match=r'OMISDatasetPipeline: stopping, fetch failed: SourceError: .*HTTP 500'):
        do.ingest(run, store)
    with pytest.raises(RunNotSwapped, match='fetch has not finished'):
        do.publish(run)
    with pytest.raises(RunNotSwapped, match='the run did not swap omis_dataset; it is unchanged'):
        do.cleanup(run, store)
    assert store.values == {}
    assert leftover_tables(datasets_conn) == []
    assert not catalog.table_exists(datasets_conn, 'omis_dataset')


def fake_time():
    now, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    return (lambda: now[0]), sleep, waits


def idle_ingest(do, conn, fetch_state, waits):
    """Run ingest on simulated time, with no page ever stored and fetch in `fetch_state`,
    recording in `waits` how long it waited between its looks for a page."""
    run = run_context()
    do.create(run)
    ledger.start_fetching(conn, run.run_key, do.source_url, 'a fetch', 1)
    ledger.set_fetch_state(conn, run.run_key, 'a fetch', fetch_state)
    clock, sleep, recorded = fake_time()
    try:
        do.ingest(run, MemoryPageStore(), clock=clock, sleep=sleep)
    finally:
        waits.extend(recorded)


@pytest.mark.parametrize('fetch_state', [ledger.FETCH_WAITING, ledger.FETCH_RETRYING])
def test_ingest_yields_its_slot_quickly_when_fetch_is_not_running(do, datasets_conn, fetch_state):
    waits = []
    with pytest.raises(steps.Idle):
        idle_ingest(do, datasets_conn, fetch_state, waits)
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6]


def test_ingest_waits_for_a_slow_fetch_with_bounded_backoff_then_yields(do, datasets_conn, monkeypatch):
    use_settings(monkeypatch, ingest_idle_reschedule_seconds=60.0)
    waits = []
    with pytest.raises(steps.Idle):
        idle_ingest(do, datasets_conn, ledger.FETCH_RUNNING, waits)
    assert waits[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert max(waits) == 2.0 and 60 <= sum(waits) < 62


def test_ingest_gives_up_on_a_stalled_fetch(do, datasets_conn, monkeypatch):
    use_settings(monkeypatch, ingest_idle_reschedule_seconds=1000.0, fetch_stall_seconds=30.0)
    with pytest.raises(FetchFailed, match='fetch has stored no page for 3. s'):
        idle_ingest(do, datasets_conn, ledger.FETCH_RUNNING, [])


def test_a_crash_mid_page_leaves_the_page_for_another_task(do, source, datasets_conn, monkeypatch):
    source.omis.put(*(omis_record(i) for i in range(250)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)

    with monkeypatch.context() as patch:
        def killed(*args):
            raise SystemExit('worker killed between COPY and commit')

        patch.setattr(ledger, 'mark_loaded', killed)
        with pytest.raises(SystemExit):
            do.ingest(run, store)
    assert ledger.page_counts(datasets_conn, run.run_key) == {ledger.READY: 3}

    assert do.ingest(run, store)['pages'] == 3
    do.publish(run)
    do.cleanup(run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_fetch_fails_on_a_bad_record_before_storing_its_page(one_page_per_value, do, source, datasets_conn):
    broken = paged_last(omis_record(150))
    broken['company__name'] = None
    source.omis.put(*(omis_record(i) for i in range(150)), broken)
    store, run = MemoryPageStore(), run_context(try_number=3, max_tries=3)
    do.create(run)
    with pytest.raises(RecordError, match=(
            rf"page {re.escape(source.omis.page_url(1))}: record {broken['reference']!r}: "
            r"field company__name \(column company_name\): is null, but its column is NOT NULL")):
        do.fetch(run, store)
    assert len(store.values) == 1  # page 0 only
    state = ledger.get_run(datasets_conn, run.run_key)
    assert state.fetch_state == ledger.FETCH_FAILED and 'company__name' in state.fetch_error


def test_a_bad_record_fails_fetch_for_good_even_with_tries_left(do, source, datasets_conn):
    broken = omis_record(3)
    broken['company__name'] = None
    source.omis.put(broken)
    store, run = MemoryPageStore(), run_context(try_number=1, max_tries=3)
    do.create(run)
    with pytest.raises(RecordError):
        do.fetch(run, store)
    assert ledger.get_run(datasets_conn, run.run_key).fetch_state == ledger.FETCH_FAILED
    with pytest.raises(FetchFailed):
        do.ingest(run, store)


def test_a_value_postgresql_refuses_is_named_by_page_and_record(do, source, datasets_conn):
    bad = omis_record(5)
    bad['delivery_date'] = '2020-02-30'
    source.omis.put(*(omis_record(i) for i in range(5)), bad)
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)
    with pytest.raises(RecordError) as error:
        do.ingest(run, store)
    assert str(error.value).startswith(
        f"page {source.omis.url}: record {bad['reference']!r}: field delivery_date (column delivery_date): ")
    assert error.value.sqlstate == psycopg2.errorcodes.DATETIME_FIELD_OVERFLOW
    assert ledger.page_counts(datasets_conn, run.run_key) == {ledger.READY: 1}


def test_cleanup_sweeps_a_variable_a_crash_left_out_of_the_ledger(do, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(150)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)
    orphan = pagestore.page_key(run.run_key, 99, 1)  # written, then the worker died before the ledger
    store.set(orphan, 'zstd:')
    unrelated = pagestore.page_key('OtherPipeline/run#0', 0, 1)
    store.set(unrelated, 'zstd:')
    with pytest.raises(RunNotSwapped):
        do.cleanup(run, store)
    assert list(store.values) == [unrelated]


def test_swap_refuses_when_a_page_is_not_loaded(do, source, datasets_conn):
    source.omis.put(*(omis_record(i) for i in range(250)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)
    with pytest.raises(RunNotSwapped, match=r'0 of 3 pages loaded'):
        do.publish(run)



class SourceWith:
    """A source whose pages come through `pages` (a test's hook around the real ones)."""

    def __init__(self, source, pages):
        self.source, self.pages = source, pages

    def url_for(self, path):
        return self.source.url_for(path)


def test_a_fetch_given_up_for_lost_writes_nothing_once_a_later_try_took_over(do, source, datasets_conn):
    """Try 1's worker was cut off; Airflow started try 2, which took the run over. Try 1
    wakes up with a page in hand: it must not record it, nor mark fetch's state."""
    source.omis.put(*(omis_record(i) for i in range(250)))
    store, stale, current = MemoryPageStore(), run_context(label='cut-off'), run_context(try_number=2)
    do.create(stale)
    ports = do.ports(store)
    real_pages = ports.source.pages

    def taken_over_after_the_first_page(url):
        for number, page in enumerate(real_pages(url)):
            if number == 1:  # try 2 takes over while try 1 holds page 1, once page 0 is recorded
                deadline = time.monotonic() + 30
                while ledger.page_counts(datasets_conn, stale.run_key) != {ledger.READY: 1}:
                    assert time.monotonic() < deadline, 'page 0 was never recorded'
                    time.sleep(0.05)
                ledger.start_fetching(datasets_conn, stale.run_key, url, 'the retry', 2)
            yield page

    with pytest.raises(FetchSuperseded, match=r'now held by the retry \(try 2\)'):
        steps.fetch(do.spec, stale, dataclasses.replace(ports, source=SourceWith(ports.source,
                                                                                 taken_over_after_the_first_page)))
    assert ledger.page_counts(datasets_conn, stale.run_key) == {ledger.READY: 1}
    assert ledger.get_run(datasets_conn, stale.run_key).fetch_state == ledger.FETCH_RUNNING  # not failed by try 1
    with pytest.raises(FetchSuperseded):  # an earlier try never takes the run back
        do.fetch(stale, store)

    assert do.fetch(current, store)['pages'] == 3  # carries on after page 0
    do.ingest(current, store)
    do.publish(current)
    do.cleanup(current, store)
    assert loaded_rows(datasets_conn) == source_rows(source)
    assert store.values == {}


def test_ingest_waits_for_a_page_another_transaction_holds(one_page_per_value, do, source, datasets_conn, datasets_dsn, monkeypatch):
    """Fetch is done, but a task that died still holds page 0 (until the server ends its
    session): ingest must not finish, or the run could never be published."""
    use_settings(monkeypatch, ingest_idle_reschedule_seconds=30.0)
    source.omis.put(*(omis_record(i) for i in range(250)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)
    holder = psycopg2.connect(datasets_dsn)
    try:
        with holder.cursor() as cursor:
            assert ledger.claim_page(cursor, run.run_key).page_number == 0
        clock, sleep, waits = fake_time()
        with pytest.raises(steps.Idle):
            do.ingest(run, store, clock=clock, sleep=sleep)
        assert sum(waits) >= 30
        assert ledger.page_counts(datasets_conn, run.run_key) == {ledger.READY: 1, ledger.LOADED: 2}
    finally:
        holder.close()  # the dead task's session ends: its claim is gone
    assert do.ingest(run, store)['pages'] == 1
    do.publish(run)
    do.cleanup(run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)


class KillsItsSession:
    """A page store that, on its `kill_at`th read, has the server terminate the session of
    the ingest connection reading it (a database restart, as that session sees it)."""

    def __init__(self, store, admin_dsn, kill_at):
        self.store, self.admin_dsn, self.kill_at, self.reads = store, admin_dsn, kill_at, 0
        self.connections = []

    def get(self, key):
        self.reads += 1
        if self.reads == self.kill_at:
            admin = psycopg2.connect(self.admin_dsn)
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute('SELECT pg_terminate_backend(%s)', (self.connections[-1].get_backend_pid(),))
            admin.close()
        return self.store.get(key)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_ingest_reconnects_when_its_session_is_killed_and_loads_each_row_once(one_page_per_value, do, source, datasets_conn,
                                                                               datasets_dsn, caplog):
    source.omis.put(*(omis_record(i) for i in range(250)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)
    killing = KillsItsSession(store, datasets_dsn, kill_at=2)
    ports = do.ports(killing)
    connect = ports.connect

    def recorded_connect():
        killing.connections.append(connect())
        return killing.connections[-1]

    with caplog.at_level('INFO', logger='dataflow.runs.steps'):
        summary = steps.ingest(do.spec, run, dataclasses.replace(ports, connect=recorded_connect))
    assert summary['pages'] == 3 and summary['rows'] == 250
    assert len(killing.connections) == 2 and killing.reads == 4  # page 1 was read again after the kill
    assert 'lost the datasets database' in caplog.text and 'connected to the datasets database again' in caplog.text
    do.publish(run)
    do.cleanup(run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_ingest_gives_up_reconnecting_after_the_configured_time(do, source, datasets_conn, monkeypatch):
    use_settings(monkeypatch, datasets_db_retry_seconds=20.0)
    source.omis.put(*(omis_record(i) for i in range(150)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)

    def unreachable():
        return psycopg2.connect('postgresql://postgres@127.0.0.1:9/postgres', connect_timeout=2)

    clock, sleep, waits = fake_time()
    with pytest.raises(psycopg2.OperationalError):
        steps.ingest(do.spec, run, dataclasses.replace(do.ports(store), connect=unreachable), clock=clock,
                     sleep=sleep)
    assert waits == [1.0] * 20
    assert ledger.page_counts(datasets_conn, run.run_key) == {ledger.READY: 2}


def test_a_swap_that_lost_its_connection_is_retried_and_a_retry_after_it_committed_does_nothing(
        do, source, datasets_conn, datasets_dsn, monkeypatch):
    source.omis.put(*(omis_record(i) for i in range(250)))
    store, run = MemoryPageStore(), run_context()
    do.create(run)
    do.fetch(run, store)
    do.ingest(run, store)
    record_load = ledger.record_load

    def session_killed_before_commit(cursor, *args, **kwargs):
        record_load(cursor, *args, **kwargs)
        admin = psycopg2.connect(datasets_dsn)
        admin.autocommit = True
        with admin.cursor() as admin_cursor:
            admin_cursor.execute('SELECT pg_terminate_backend(%s)', (cursor.connection.get_backend_pid(),))
        admin.close()

    with monkeypatch.context() as patch:
        patch.setattr(ledger, 'record_load', session_killed_before_commit)
        with pytest.raises(SwapError, match='lost the database connection'):
            do.publish(run)
    assert not catalog.table_exists(datasets_conn, 'omis_dataset')
    assert not ledger.get_run(datasets_conn, run.run_key).swapped

    first = do.publish(run)
    assert first['rows_after'] == 250 and 'swapped_by_an_earlier_try' not in first
    again = do.publish(run)  # the try that swapped died before saying so: its retry
    assert again['swapped_by_an_earlier_try'] is True
    assert {k: again[k] for k in ('table', 'rows_before', 'rows_after')} == {
        k: first[k] for k in ('table', 'rows_before', 'rows_after')}
    do.cleanup(run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM dataflow.load_history WHERE run_key = %s', (run.run_key,))
        assert cursor.fetchone()[0] == 1


def test_a_waiting_ingest_task_hears_of_its_runs_pages_at_once_and_not_of_other_runs(do, datasets_conn,
                                                                                      datasets_dsn):
    run, other = run_context(), run_context(key='OMISDatasetPipeline/manual__2#0')
    for each in (run, other):
        do.create(each)
        ledger.start_fetching(datasets_conn, each.run_key, do.source_url, 'a fetch', 1)
    listener = psycopg2.connect(datasets_dsn)
    try:
        ledger.listen_for_news(listener)
        page = [ledger.ReadyPage(0, 'http://source/page0', None, 1)]

        ledger.add_ready_pages(datasets_conn, other.run_key, 'a fetch', page, 'key-of-the-other-run')
        assert ledger.wait_for_news(listener, run.run_key, 0.5) is False  # another run's news

        heard = []
        waiting = threading.Thread(target=lambda: heard.append(ledger.wait_for_news(listener, run.run_key, 120)))
        waiting.start()
        started = time.monotonic()
        ledger.add_ready_pages(datasets_conn, run.run_key, 'a fetch', page, 'key-of-this-run')
        waiting.join(120)
        assert heard == [True] and time.monotonic() - started < 60  # woken by the news, not the timeout

        with datasets_conn.cursor() as cursor:  # a loaded page and fetch's state are news too
            ledger.mark_loaded(cursor, run.run_key, 0, 'another task')
        datasets_conn.commit()
        assert ledger.wait_for_news(listener, run.run_key, 60) is True
        ledger.set_fetch_state(datasets_conn, run.run_key, 'a fetch', ledger.FETCH_DONE, pages=1, rows=1)
        assert ledger.wait_for_news(listener, run.run_key, 60) is True
        assert ledger.wait_for_news(listener, run.run_key, 0.2) is False  # each piece of news heard once
    finally:
        listener.close()
