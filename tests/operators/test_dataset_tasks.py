"""The dataset tasks' logic, run in-process against the real PostgreSQL and demo source,
with pages kept in a dict instead of Airflow Variables. tests/e2e runs the same tasks
on a real Airflow scheduler and Celery worker."""

import threading

import psycopg2.errorcodes
import pytest

from dataflow import handoff, ledger, tables
from dataflow.demo.omis_records import omis_record
from dataflow.errors import RecordError, SourceError
from dataflow.hooks.hawk import HawkClient
from dataflow.operators import dataset_tasks as tasks
from tests.conftest import TEST_HAWK_ID, TEST_HAWK_KEY
from tests.test_sync import omis_spec
from tests.test_tables import leftover_tables


class DictPageStore:
    def __init__(self):
        self.values, self.lock = {}, threading.Lock()
        self.sets = self.gets = 0

    def set(self, key, value):
        with self.lock:
            self.values[key] = value
            self.sets += 1

    def get(self, key):
        with self.lock:
            self.gets += 1
            return self.values[key]

    def delete(self, key):
        with self.lock:
            self.values.pop(key, None)

    def keys(self, prefix):
        with self.lock:
            return [k for k in self.values if k.startswith(prefix)]


@pytest.fixture
def spec(source, datasets_dsn, monkeypatch):
    monkeypatch.setattr('dataflow.constants.DATASETS_DB_URL', datasets_dsn)
    spec = omis_spec(source)
    return type(spec)(**{**spec.__dict__, 'target_db': 'dataflow_test_no_such_connection'})


def run_context(try_number=1, max_tries=3, label='test', key='OMISDatasetPipeline/manual__1#0'):
    return tasks.RunContext(key, try_number, max_tries, label)


def client():
    return HawkClient(TEST_HAWK_ID, TEST_HAWK_KEY, max_attempts=1, backoff_base=0.01, read_timeout=5)


def loaded_rows(conn):
    with conn.cursor() as cursor:
        cursor.execute('SELECT omis_order_reference, company_name, subtotal FROM omis_dataset ORDER BY 1')
        rows = cursor.fetchall()
    conn.commit()
    return rows


def source_rows(source):
    return sorted((r['reference'], r['company__name'], r['subtotal_cost']) for r in source.records())


def run_all(spec, run, store, ingest_tasks=3):
    """fetch alongside check -> create -> ingest x N (threads) -> swap -> cleanup."""
    errors = []

    def guarded(function, *args):
        try:
            function(*args)
        except Exception as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    fetcher = threading.Thread(target=guarded, args=(tasks.fetch, spec, run, client(), store))
    fetcher.start()
    tasks.check_if_table_exists(spec, run)
    tasks.create_target_table(spec, run)
    loaders = [threading.Thread(target=guarded, args=(tasks.ingest, spec, run, store)) for _ in range(ingest_tasks)]
    for thread in loaders:
        thread.start()
    for thread in [fetcher, *loaders]:
        thread.join()
    if errors:
        raise errors[0]
    summary = tasks.swap(spec, run)
    tasks.cleanup(spec, run, store)
    return summary


def test_concurrent_ingest_loads_every_page_exactly_once(spec, source, datasets_conn):
    source.put(*(omis_record(i) for i in range(2050)))
    store = DictPageStore()
    summary = run_all(spec, run_context(), store)
    assert summary['rows_after'] == 2050 and summary['rows_before'] is None
    assert loaded_rows(datasets_conn) == source_rows(source)
    assert store.values == {} and store.sets == 21 and store.gets == 21
    assert leftover_tables(datasets_conn) == []
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM dataflow.pages')
        assert cursor.fetchone() == (0,)
        cursor.execute('SELECT swapped_at IS NOT NULL, finished_at IS NOT NULL, pages, rows FROM dataflow.runs')
        assert cursor.fetchall() == [(True, True, 21, 2050)]
        cursor.execute('SELECT h.table_name, h.pipeline, h.rows_before, h.rows_after, h.source_url, '
                       'h.started_at = r.created_at, h.finished_at >= h.started_at '
                       'FROM dataflow.load_history h JOIN dataflow.runs r USING (run_key)')
        assert cursor.fetchall() == [('omis_dataset', 'OMISDatasetPipeline', None, 2050, spec.source_url, True, True)]
    datasets_conn.commit()


def test_a_second_run_replaces_the_table(spec, source, datasets_conn):
    source.put(*(omis_record(i) for i in range(300)))
    run_all(spec, run_context(key='r/1#0'), DictPageStore())
    source.remove(*(omis_record(i)['reference'] for i in range(0, 300, 3)))
    source.put(*(omis_record(i, version=2) for i in range(1, 300, 3)), *(omis_record(i) for i in range(300, 420)))
    summary = run_all(spec, run_context(key='r/2#0'), DictPageStore())
    assert (summary['rows_before'], summary['rows_after']) == (300, 320)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_fetch_retry_resumes_after_the_last_stored_page(spec, source, datasets_conn):
    source.put(*(omis_record(i) for i in range(450)))
    store, run = DictPageStore(), run_context(try_number=1, max_tries=2)
    tasks.create_target_table(spec, run)
    source.fail_next(2, 503)
    with pytest.raises(SourceError, match=r'\?page=2: gave up after 1 attempts: HTTP 503'):
        tasks.fetch(spec, run, client(), store)
    state = ledger.get_run(datasets_conn, run.run_key)
    assert state.fetch_state == ledger.FETCH_RETRYING and 'HTTP 503' in state.fetch_error
    assert len(store.values) == 2

    summary = tasks.fetch(spec, run_context(try_number=2, max_tries=2), client(), store)
    assert (summary['pages'], summary['rows']) == (5, 450)
    assert dict(source.requests) == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    tasks.ingest(spec, run, store)
    tasks.swap(spec, run)
    tasks.cleanup(spec, run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_ingest_stops_when_fetch_fails_for_good(spec, source, datasets_conn):
    source.put(*(omis_record(i) for i in range(150)))
    store, run = DictPageStore(), run_context(try_number=3, max_tries=3)
    tasks.create_target_table(spec, run)
    source.fail_next(1, 500)
    with pytest.raises(SourceError):
        tasks.fetch(spec, run, client(), store)
    with pytest.raises(tasks.FetchFailed, match=r'OMISDatasetPipeline: stopping, fetch failed: SourceError: .*HTTP 500'):
        tasks.ingest(spec, run, store)
    with pytest.raises(tasks.RunNotSwapped, match='fetch has not finished'):
        tasks.swap(spec, run)
    with pytest.raises(tasks.RunNotSwapped, match='the run did not swap omis_dataset; it is unchanged'):
        tasks.cleanup(spec, run, store)
    assert store.values == {}
    assert leftover_tables(datasets_conn) == []
    assert not tables.table_exists(datasets_conn, 'omis_dataset')


def fake_time():
    now, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    return (lambda: now[0]), sleep, waits


def idle_ingest(spec, conn, fetch_state, waits):
    """Run ingest on simulated time, with no page ever stored and fetch in `fetch_state`,
    recording in `waits` how long it waited between its looks for a page."""
    run = run_context()
    tasks.create_target_table(spec, run)
    ledger.set_fetch_state(conn, run.run_key, fetch_state)
    clock, sleep, recorded = fake_time()
    try:
        tasks.ingest(spec, run, DictPageStore(), clock=clock, sleep=sleep)
    finally:
        waits.extend(recorded)


@pytest.mark.parametrize('fetch_state', [ledger.FETCH_WAITING, ledger.FETCH_RETRYING])
def test_ingest_yields_its_slot_quickly_when_fetch_is_not_running(spec, datasets_conn, fetch_state):
    waits = []
    with pytest.raises(tasks.Reschedule):
        idle_ingest(spec, datasets_conn, fetch_state, waits)
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.6]


def test_ingest_waits_for_a_slow_fetch_with_bounded_backoff_then_yields(spec, datasets_conn, monkeypatch):
    monkeypatch.setattr('dataflow.constants.INGEST_IDLE_RESCHEDULE_SECONDS', 60.0)
    waits = []
    with pytest.raises(tasks.Reschedule):
        idle_ingest(spec, datasets_conn, ledger.FETCH_RUNNING, waits)
    assert waits[:6] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    assert max(waits) == 2.0 and 60 <= sum(waits) < 62


def test_ingest_gives_up_on_a_stalled_fetch(spec, datasets_conn, monkeypatch):
    monkeypatch.setattr('dataflow.constants.INGEST_IDLE_RESCHEDULE_SECONDS', 1000.0)
    monkeypatch.setattr('dataflow.constants.FETCH_STALL_SECONDS', 30.0)
    with pytest.raises(tasks.FetchFailed, match='fetch has stored no page for 3. s'):
        idle_ingest(spec, datasets_conn, ledger.FETCH_RUNNING, [])


def test_a_crash_mid_page_leaves_the_page_for_another_task(spec, source, datasets_conn, monkeypatch):
    source.put(*(omis_record(i) for i in range(250)))
    store, run = DictPageStore(), run_context()
    tasks.create_target_table(spec, run)
    tasks.fetch(spec, run, client(), store)

    with monkeypatch.context() as patch:
        def killed(*args):
            raise SystemExit('worker killed between COPY and commit')

        patch.setattr(ledger, 'mark_loaded', killed)
        with pytest.raises(SystemExit):
            tasks.ingest(spec, run, store)
    assert ledger.page_counts(datasets_conn, run.run_key) == {ledger.READY: 3}

    assert tasks.ingest(spec, run, store)['pages'] == 3
    tasks.swap(spec, run)
    tasks.cleanup(spec, run, store)
    assert loaded_rows(datasets_conn) == source_rows(source)


def test_fetch_fails_on_a_bad_record_before_storing_its_page(spec, source, datasets_conn):
    broken = omis_record(150)
    broken['company__name'] = None
    source.put(*(omis_record(i) for i in range(150)), broken)
    store, run = DictPageStore(), run_context(try_number=3, max_tries=3)
    tasks.create_target_table(spec, run)
    with pytest.raises(RecordError, match=(
            rf"page {source.dataset_url}\?page=1: record {broken['reference']!r}: "
            r"field company__name \(column company_name\): is null, but its column is NOT NULL")):
        tasks.fetch(spec, run, client(), store)
    assert len(store.values) == 1  # page 0 only
    state = ledger.get_run(datasets_conn, run.run_key)
    assert state.fetch_state == ledger.FETCH_FAILED and 'company__name' in state.fetch_error


def test_a_bad_record_fails_fetch_for_good_even_with_tries_left(spec, source, datasets_conn):
    broken = omis_record(3)
    broken['company__name'] = None
    source.put(broken)
    store, run = DictPageStore(), run_context(try_number=1, max_tries=3)
    tasks.create_target_table(spec, run)
    with pytest.raises(RecordError):
        tasks.fetch(spec, run, client(), store)
    assert ledger.get_run(datasets_conn, run.run_key).fetch_state == ledger.FETCH_FAILED
    with pytest.raises(tasks.FetchFailed):
        tasks.ingest(spec, run, store)


def test_a_value_postgresql_refuses_is_named_by_page_and_record(spec, source, datasets_conn):
    bad = omis_record(5)
    bad['delivery_date'] = '2020-02-30'
    source.put(*(omis_record(i) for i in range(5)), bad)
    store, run = DictPageStore(), run_context()
    tasks.create_target_table(spec, run)
    tasks.fetch(spec, run, client(), store)
    with pytest.raises(RecordError) as error:
        tasks.ingest(spec, run, store)
    assert str(error.value).startswith(
        f"page {source.dataset_url}: record {bad['reference']!r}: field delivery_date (column delivery_date): ")
    assert error.value.sqlstate == psycopg2.errorcodes.DATETIME_FIELD_OVERFLOW
    assert ledger.page_counts(datasets_conn, run.run_key) == {ledger.READY: 1}


def test_cleanup_sweeps_a_variable_a_crash_left_out_of_the_ledger(spec, source, datasets_conn):
    source.put(*(omis_record(i) for i in range(150)))
    store, run = DictPageStore(), run_context()
    tasks.create_target_table(spec, run)
    tasks.fetch(spec, run, client(), store)
    orphan = handoff.page_key(run.run_key, 99)  # written, then the worker died before the ledger
    store.set(orphan, 'zstd:')
    unrelated = handoff.page_key('OtherPipeline/run#0', 0)
    store.set(unrelated, 'zstd:')
    with pytest.raises(tasks.RunNotSwapped):
        tasks.cleanup(spec, run, store)
    assert list(store.values) == [unrelated]


def test_swap_refuses_when_a_page_is_not_loaded(spec, source, datasets_conn):
    source.put(*(omis_record(i) for i in range(250)))
    store, run = DictPageStore(), run_context()
    tasks.create_target_table(spec, run)
    tasks.fetch(spec, run, client(), store)
    with pytest.raises(tasks.RunNotSwapped, match=r'0 of 3 pages loaded'):
        tasks.swap(spec, run)
