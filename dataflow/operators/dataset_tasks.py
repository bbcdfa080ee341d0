"""The tasks of a dataset pipeline run (see dataflow/dags/dataset_pipelines.py).

check-if-table-exists -> create-target-table -> ingest-0..N-1 -> swap -> cleanup,
with fetch running alongside from the start. Each function takes the pipeline's spec and
the run's identity, does its part with the core library, and returns a small summary
(never data) that Airflow keeps in XCom.
"""

import datetime
import logging
import os
import queue
import resource
import socket
import threading
import time
from dataclasses import dataclass

from dataflow import constants, handoff, ledger, quality, tables
from dataflow.errors import DataflowError, RecordError, naming_pipeline
from dataflow.quality import QualityGateFailed
from dataflow.hooks import datasets_db
from dataflow.hooks.hawk import HawkClient
from dataflow.records import RecordRenderer

log = logging.getLogger(__name__)


class FetchFailed(DataflowError):
    """Fetch failed for good; the ingest tasks stop."""


class RunNotSwapped(DataflowError):
    """The run ended without swapping its table in; the target is unchanged."""


@dataclass(frozen=True)
class RunContext:
    """Who is running: the run attempt's key and the task's try."""

    run_key: str
    try_number: int
    max_tries: int
    task_label: str

    @property
    def last_try(self):
        return self.try_number >= self.max_tries

    @classmethod
    def from_airflow(cls, context):
        dag_run, ti = context['dag_run'], context['ti']
        return cls(
            run_key=handoff.run_key(dag_run.dag_id, dag_run.run_id, getattr(dag_run, 'clear_number', 0)),
            try_number=ti.try_number,
            max_tries=context['task'].retries + 1,
            task_label=f'{ti.task_id}@{socket.gethostname()}:{os.getpid()}',
        )


class VariablePageStore:
    """Pages in Airflow Variables, through the Task SDK."""

    def keys(self, prefix):
        from airflow.sdk import Variable

        return list(Variable.keys(prefix))

    def set(self, key, value):
        from airflow.sdk import Variable

        Variable.set(key, value)

    def get(self, key):
        # Read through the execution API's secrets backend, as Variable.get does, minus
        # the secrets masker: it re-escapes the whole value as a regex on every read to
        # decide whether to mask it, and page values under our keys never are (it was
        # 18% of an ingest task's CPU).
        from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

        value = ExecutionAPISecretsBackend().get_variable(key)
        if value is None:
            raise DataflowError(f'page Variable {key} is missing')
        return value

    def delete(self, key):
        from airflow.sdk import Variable

        Variable.delete(key)


def _peak_rss_mb():
    """This process's peak resident memory, for the summaries (Linux reports KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rate(count, seconds):
    return f'{count / seconds:,.0f}/s' if seconds > 0 else '-'


def staging_table(spec, run_key):
    return tables.staging_table_name(spec.table_name, run_key)


def _start(conn, spec, run):
    ledger.ensure_schema(conn)
    ledger.start_run(conn, run.run_key, spec.name, spec.table_name, staging_table(spec, run.run_key))


def check_if_table_exists(spec, run):
    conn = datasets_db.connect(spec.target_db)
    try:
        exists = tables.table_exists(conn, spec.table_name)
        rows = tables.row_count(conn, spec.table_name) if exists else None
    finally:
        conn.close()
    log.info('%s: target table %s %s', spec.name, spec.table_name,
             f'exists with {rows} rows' if exists else 'does not exist yet: this run creates it')
    return {'table': spec.table_name, 'exists': exists, 'rows': rows}


def create_target_table(spec, run):
    """Create the run's staging table. Every run loads into a staging table and swaps it in,
    also the first one: one path to test, and the target appears complete or not at all."""
    conn = datasets_db.connect(spec.target_db)
    try:
        _start(conn, spec, run)
        staging = staging_table(spec, run.run_key)
        tables.drop_table(conn, staging)
        tables.create_table(conn, staging, spec.columns)
        conn.commit()
    finally:
        conn.close()
    log.info('%s: created staging table %s', spec.name, staging)
    return {'staging_table': staging}


# Failures that another try cannot mend: the run fails at once, naming what was wrong.
NOT_RETRYABLE = (RecordError, QualityGateFailed)


class _PageStorer(threading.Thread):
    """Stores fetched pages (the Variable, then the ledger's 'ready' row) in the order
    they come, while the fetch thread goes on fetching and rendering the next ones: both
    spend much of their time waiting, on the source and on the api-server."""

    QUEUE_PAGES = 4  # rendered pages waiting to be stored, at most: bounds memory

    def __init__(self, conn, store, run_key):
        super().__init__(name='page-storer', daemon=True)
        self.conn, self.store, self.run_key = conn, store, run_key
        self.queue = queue.Queue(maxsize=self.QUEUE_PAGES)
        self.error = None
        self.seconds = 0.0

    def put(self, item):
        """Queue a page; raise the storer's error if it has failed."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish_quietly(self):
        """Stop after the page being stored, if any; the fetch thread has failed."""
        while self.is_alive():
            try:
                self.queue.put(None, timeout=0.5)
            except queue.Full:
                continue
            self.join()

    def finish(self):
        """Wait for every queued page to be stored; raise the storer's error if any."""
        if self.is_alive():
            self.put(None)
            self.join()
        if self.error is not None:
            raise self.error

    def run(self):
        while True:
            item = self.queue.get()
            if item is None or self.error is not None:
                return
            page_number, page, key, value = item
            started = time.perf_counter()
            try:
                # Variable first, ledger second: a page in the ledger always has its
                # Variable; a Variable a crash leaves out of the ledger is swept by
                # cleanup, by its run's key prefix.
                self.store.set(key, value)
                ledger.add_ready_page(self.conn, self.run_key, page_number, page.url, page.next_url, key,
                                      len(page.results))
            except BaseException as exc:  # noqa: BLE001 - handed to the fetch thread
                self.error = exc
            self.seconds += time.perf_counter() - started


def fetch(spec, run, client=None, store=None):
    """Page through the source, storing each page in a Variable and recording it in the
    ledger. A retry carries on after the last page stored."""
    client = client or HawkClient()
    store = store or VariablePageStore()
    renderer = RecordRenderer(spec.columns)
    conn = datasets_db.connect(spec.target_db)
    try:
        _start(conn, spec, run)
        resume = ledger.resume_point(conn, run.run_key, spec.source_url)
        if resume.pages:
            log.info('%s: resuming after %d pages (%d rows) already stored', spec.name, resume.pages, resume.rows)
        ledger.set_fetch_state(conn, run.run_key, ledger.FETCH_RUNNING)
        page_number, pages, rows = resume.page_number, resume.pages, resume.rows
        started, body_bytes, stored_bytes = time.perf_counter(), 0, 0
        render_seconds = 0.0
        storer = _PageStorer(datasets_db.connect(spec.target_db), store, run.run_key)
        storer.start()
        try:
            for page in (client.pages(resume.url) if resume.url else ()):
                # Rendered here, so that a record that cannot be loaded fails the run
                # before anything is loaded, and the stored page is as small as it can be.
                rendering = time.perf_counter()
                value = handoff.encode_page(renderer.render(page.results, page.url))
                render_seconds += time.perf_counter() - rendering
                storer.put((page_number, page, handoff.page_key(run.run_key, page_number), value))
                page_number, pages, rows = page_number + 1, pages + 1, rows + len(page.results)
                body_bytes += page.body_bytes
                stored_bytes += len(value)
                elapsed = time.perf_counter() - started
                log.info('%s: page %d: %d rows (%d KB, stored as %d KB); %d rows so far, %s',
                         spec.name, page_number - 1, len(page.results), page.body_bytes // 1024,
                         len(value) // 1024, rows, _rate(rows - resume.rows, elapsed))
            storer.finish()
        except Exception as exc:
            storer.error = storer.error or exc  # stop storing; what is stored stays, for a retry
            storer.finish_quietly()
            final = run.last_try or isinstance(exc, NOT_RETRYABLE)
            state = ledger.FETCH_FAILED if final else ledger.FETCH_RETRYING
            ledger.set_fetch_state(conn, run.run_key, state, error=f'{type(exc).__name__}: {exc}'[:2000])
            raise
        finally:
            storer.conn.close()
        ledger.set_fetch_state(conn, run.run_key, ledger.FETCH_DONE, pages=pages, rows=rows)
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    log.info('%s: fetched %d pages, %d rows in %.1f s (%s); %d KB of JSON stored as %d KB',
             spec.name, pages, rows, seconds, _rate(rows - resume.rows, seconds), body_bytes // 1024,
             stored_bytes // 1024)
    return {'pages': pages, 'rows': rows, 'seconds': round(seconds, 3),
            'render_seconds': round(render_seconds, 3), 'store_seconds': round(storer.seconds, 3),
            'source_bytes': body_bytes, 'stored_bytes': stored_bytes, 'peak_rss_mb': _peak_rss_mb()}


class Reschedule(Exception):
    """Nothing to load for a while: give the worker slot back and come again later."""


# When fetch is not running (queued for a slot, or waiting to retry), an idle ingest task
# may be the reason it cannot start: give the slot back this soon.
YIELD_TO_FETCH_SECONDS = 2.0


def ingest(spec, run, store=None, clock=time.monotonic, sleep=time.sleep):
    """Claim ready pages one at a time and COPY them into the staging table, until fetch
    has finished and nothing is left to claim."""
    store = store or VariablePageStore()
    renderer = RecordRenderer(spec.columns)
    conn = datasets_db.connect(spec.target_db)
    pages = rows = 0
    started = idle_since = clock()
    wait = 0.1
    read_seconds = copy_seconds = 0.0
    try:
        staging = staging_table(spec, run.run_key)
        while True:
            with conn.cursor() as cursor:
                claimed = ledger.claim_page(cursor, run.run_key)
                if claimed is not None:
                    reading = time.perf_counter()
                    payload = handoff.decode_page(store.get(claimed.variable_key), claimed.variable_key)
                    copying = time.perf_counter()
                    read_seconds += copying - reading
                    tables.copy_payload(cursor, staging, renderer, payload, claimed.url)
                    ledger.mark_loaded(cursor, run.run_key, claimed.page_number, run.task_label)
            conn.commit()
            if claimed is not None:
                copy_seconds += time.perf_counter() - copying
                # The page is in the staging table for good; its Variable is no longer
                # needed. (Cleanup deletes any that a crash leaves here.)
                store.delete(claimed.variable_key)
                pages, rows = pages + 1, rows + claimed.rows
                log.info('%s: loaded page %d (%d rows); %d rows by this task, %s', spec.name,
                         claimed.page_number, claimed.rows, rows, _rate(rows, clock() - started))
                idle_since, wait = clock(), 0.1
                continue
            state = ledger.get_run(conn, run.run_key)
            if state.fetch_state == ledger.FETCH_DONE:
                break
            if state.fetch_state == ledger.FETCH_FAILED:
                raise FetchFailed(f'{spec.name}: stopping, fetch failed: {state.fetch_error}')
            idle = clock() - idle_since
            if idle >= constants.FETCH_STALL_SECONDS:
                raise FetchFailed(f'{spec.name}: fetch has stored no page for {idle:.0f} s')
            fetch_waiting = state.fetch_state in (ledger.FETCH_WAITING, ledger.FETCH_RETRYING)
            if fetch_waiting and idle >= YIELD_TO_FETCH_SECONDS:
                log.info('%s: fetch is %s; handing the worker slot back so that it can run',
                         spec.name, state.fetch_state)
                raise Reschedule()
            if idle >= constants.INGEST_IDLE_RESCHEDULE_SECONDS:
                log.info('%s: nothing to load for %.0f s; handing the worker slot back', spec.name, idle)
                raise Reschedule()
            sleep(wait)
            wait = min(wait * 2, constants.INGEST_POLL_MAX_SECONDS)
    finally:
        conn.close()
    seconds = clock() - started
    log.info('%s: this task loaded %d pages, %d rows in %.1f s (%s)', spec.name, pages, rows, seconds,
             _rate(rows, seconds))
    return {'pages': pages, 'rows': rows, 'seconds': round(seconds, 3), 'read_seconds': round(read_seconds, 3),
            'copy_seconds': round(copy_seconds, 3), 'peak_rss_mb': _peak_rss_mb()}


def swap(spec, run):
    """Swap the staging table in, once fetch is done and every page it stored is loaded."""
    conn = datasets_db.connect(spec.target_db)
    try:
        state = ledger.get_run(conn, run.run_key)
        if state is None or state.fetch_state != ledger.FETCH_DONE:
            raise RunNotSwapped(f'{spec.name}: fetch has not finished (state {state and state.fetch_state})')
        counts = ledger.page_counts(conn, run.run_key)
        loaded = counts.get(ledger.LOADED, 0)
        if loaded != state.pages or sum(counts.values()) != state.pages:
            raise RunNotSwapped(
                f'{spec.name}: {loaded} of {state.pages} pages loaded ({counts}); not swapping'
            )
        gates = quality.check(conn, spec, state.staging_table)
        if gates.rows_after != state.rows:
            raise RunNotSwapped(f'{spec.name}: staging has {gates.rows_after} rows, fetch stored {state.rows}')

        def record(cursor):
            ledger.mark_swapped(cursor, run.run_key)
            ledger.record_load(cursor, run.run_key, gates.rows_before, gates.rows_after, spec.source_url)

        result = tables.swap(conn, state.staging_table, spec.table_name, before_commit=record,
                             counts=(gates.rows_before, gates.rows_after))
    finally:
        conn.close()
    log.info('%s: swapped in %s: %s -> %d rows; readers were locked out for %.1f ms; views re-pointed: %s',
             spec.name, spec.table_name, 'no table' if result.rows_before is None else result.rows_before,
             result.rows_after, result.lock_seconds * 1000, ', '.join(result.views_repointed) or 'none')
    return {'table': spec.table_name, 'rows_before': result.rows_before, 'rows_after': result.rows_after,
            'lock_ms': round(result.lock_seconds * 1000, 1), 'views_repointed': list(result.views_repointed),
            'warnings': list(gates.warnings)}


def cleanup(spec, run, store=None):
    """Runs whatever happened before: deletes the run's page Variables and its staging
    table. Fails when the run did not swap, so that the run shows as failed."""
    store = store or VariablePageStore()
    conn = datasets_db.connect(spec.target_db)
    try:
        ledger.ensure_schema(conn)
        state = ledger.get_run(conn, run.run_key)
        keys = set(ledger.variable_keys(conn, run.run_key)) | set(store.keys(handoff.run_key_prefix(run.run_key)))
        for key in keys:
            store.delete(key)
        staging = staging_table(spec, run.run_key)
        tables.drop_table(conn, staging)
        conn.commit()
        if state is not None:
            ledger.finish_run(conn, run.run_key)
    finally:
        conn.close()
    log.info('%s: deleted %d page Variables and staging table %s', spec.name, len(keys), staging)
    if state is None or not state.swapped:
        raise RunNotSwapped(f'{spec.name}: the run did not swap {spec.table_name}; it is unchanged. '
                            'See the failed task above for why.')
    return {'variables_deleted': len(keys), 'finished_at': datetime.datetime.now(datetime.timezone.utc).isoformat()}


RESCHEDULE_AFTER = datetime.timedelta(seconds=5)


class PipelineTaskError(DataflowError):
    """A task failed; the message names the pipeline, and the page, record and field
    where they apply."""



def airflow_callable(task_function, spec):
    """`task_function(spec, run)` as a PythonOperator callable: reads the run from Airflow's
    context and turns data-flow's outcomes into Airflow's (reschedule, fail without retry)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

    def run_task(**context):
        run = RunContext.from_airflow(context)
        try:
            return task_function(spec, run)
        except Reschedule:
            raise AirflowRescheduleException(datetime.datetime.now(datetime.timezone.utc) + RESCHEDULE_AFTER) from None
        except (FetchFailed, RunNotSwapped) as exc:
            # Retrying cannot help: the cause is another task's failure.
            raise AirflowFailException(str(exc)) from None
        except NOT_RETRYABLE as exc:
            raise AirflowFailException(naming_pipeline(spec.name, exc)) from None
        except DataflowError as exc:
            # Retried by Airflow (TASK_RETRIES); the message names the pipeline either way.
            raise PipelineTaskError(naming_pipeline(spec.name, exc)) from exc

    run_task.__name__ = task_function.__name__
    return run_task
