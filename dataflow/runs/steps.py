"""The steps of a dataset pipeline run, over explicit ports, with no Airflow import.

    check_if_table_exists -> create_target_table -> ingest (N at once) -> publish -> cleanup
    fetch, alongside from the start

Airflow runs each step as a task (dataflow.airflow.tasks); the one-process runner
(dataflow.runs.local) runs the same steps in threads. Each step takes the pipeline's spec,
the run's identity and its Ports (the datasets database, the source, the page store, the
load strategy), does its part, and returns a small summary (never data).

fetch pages through the source, renders each page to COPY text and stores pages in
batches (one value each, see _PageStorer), then records them in the ledger as ready, a row
per page. ingest claims a ready batch at a time (SELECT ... FOR UPDATE SKIP LOCKED) and
loads it in the same transaction that marks its pages loaded, so a page is loaded exactly
once; between looks it waits for the run's news in the ledger. publish makes the loaded
pages the dataset once every page is loaded; cleanup removes what the run left behind and
fails a run that did not publish.

What infrastructure faults do to a run (docs/reliability.md has the bounds):
- a fetch try given up for lost (its worker gone or cut off) is superseded by the next try,
  which carries on after the last page recorded; the stale one writes nothing more;
- a page claimed by a task that died is claimed again once the database ends the dead
  session (dataflow.load.connection); ingest tasks wait for such pages before finishing;
- an ingest task that loses the database reconnects for DATASETS_DB_RETRY_SECONDS; the page
  it was loading rolled back and is claimed again;
- publish is idempotent: a retry after a swap that committed (its answer lost) succeeds
  without swapping again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import queue
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from dataflow import settings
from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.errors import Fatal, FetchFailed, FetchSuperseded, RunNotSwapped
from dataflow.load import catalog
from dataflow.load.connection import Connect, connection_lost
from dataflow.load.copy import RecordRenderer
from dataflow.load.strategies import LoadStrategy
from dataflow.runs import ledger, pagestore
from dataflow.runs.drift import DriftCheck, unmapped_keys
from dataflow.runs.pagestore import PageStore
from dataflow.sources.http import Source

log = logging.getLogger(__name__)

Summary = dict[str, Any]


@dataclass(frozen=True)
class RunContext:
    """Who is running: the run attempt's key, the try of this step, and who is doing it."""

    run_key: str
    try_number: int
    max_tries: int
    task_label: str

    @property
    def last_try(self) -> bool:
        return self.try_number >= self.max_tries


@dataclass(frozen=True)
class Ports:
    """What the steps work with; each runner gives its own."""

    connect: Connect          # a new connection to the datasets database
    source: Source            # the pipeline's source
    pages: PageStore          # where fetch leaves pages for ingest
    strategy: LoadStrategy    # how loaded pages become the dataset


class Idle(Exception):
    """Nothing to load for a while: give the worker slot back and come again later."""


# When fetch is not running (queued for a slot, or waiting to retry), an idle ingest task
# may be the reason it cannot start: give the slot back this soon.
YIELD_TO_FETCH_SECONDS = 2.0


def _peak_rss_mb() -> float:
    """This process's peak resident memory, for the summaries (Linux reports KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _rate(count: int, seconds: float) -> str:
    return f'{count / seconds:,.0f}/s' if seconds > 0 else '-'


def _start(conn: Connection, spec: DatasetPipelineSpec, run: RunContext, ports: Ports) -> None:
    ledger.ensure_schema(conn)
    ledger.start_run(conn, run.run_key, spec.name, spec.table_name, ports.strategy.staging_name(spec, run.run_key))


def check_if_table_exists(spec: DatasetPipelineSpec, run: RunContext, ports: Ports) -> Summary:
    conn = ports.connect()
    try:
        exists = catalog.table_exists(conn, spec.table_name)
        rows = catalog.row_count(conn, spec.table_name) if exists else None
    finally:
        conn.close()
    log.info('%s: target table %s %s', spec.name, spec.table_name,
             f'exists with {rows} rows' if exists else 'does not exist yet: this run creates it')
    return {'table': spec.table_name, 'exists': exists, 'rows': rows}


def create_target_table(spec: DatasetPipelineSpec, run: RunContext, ports: Ports) -> Summary:
    """Make the strategy ready for the run's pages (the replace strategy: the run's staging
    table). Every run loads into a staging table and swaps it in, also the first one: one
    path to test, and the target appears complete or not at all."""
    conn = ports.connect()
    try:
        _start(conn, spec, run, ports)
        staging = ports.strategy.prepare(conn, spec, run.run_key)
    finally:
        conn.close()
    log.info('%s: created staging table %s', spec.name, staging)
    return {'staging_table': staging}


@dataclass(frozen=True)
class _Fetched:
    """A fetched page, rendered and encoded, to be stored (not the page's records: up to
    QUEUE_PAGES of these wait in memory)."""

    page: ledger.ReadyPage
    value: str
    new_keys: list[str]          # keys the run had not seen before this page
    missing_fields: list[str]    # allowed fields this run found missing so far


class _PageStorer(threading.Thread):
    """Stores fetched pages (their value, then the ledger's 'ready' rows) in the order they
    come, while the fetch thread goes on fetching and rendering the next ones: both spend
    much of their time waiting, on the source and on the page store.

    Pages are stored in batches, one value each: a store's cost is mostly per call (a
    Variable is a round trip through the api-server and a transaction, and the ledger row
    another), so storing keeps up with the source. A batch is at least MIN_BATCH pages,
    unless the source ends or its first page has waited MAX_WAIT_SECONDS (a slow source's
    pages are not held back for long), and at most BATCH_PAGES: the pages that queued up
    while the last batch was being stored."""

    QUEUE_PAGES = 8        # rendered pages waiting to be stored, at most: bounds memory
    MIN_BATCH = 4
    BATCH_PAGES = 8        # pages stored as one value, at most: bounds an ingest task's memory
    MAX_WAIT_SECONDS = 1.0

    def __init__(self, conn: Connection, store: PageStore, run: RunContext, owner: str) -> None:
        super().__init__(name='page-storer', daemon=True)
        self.conn, self.store, self.run_key, self.attempt, self.owner = conn, store, run.run_key, run.try_number, owner
        self.queue: queue.Queue[_Fetched | None] = queue.Queue(maxsize=self.QUEUE_PAGES)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.values = 0

    def put(self, item: _Fetched | None) -> None:
        """Queue a page (None: the end); raise the storer's error if it has failed."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish_quietly(self) -> None:
        """Stop after the pages being stored, if any; the fetch thread has failed."""
        while self.is_alive():
            try:
                self.queue.put(None, timeout=0.5)
            except queue.Full:
                continue
            self.join()

    def finish(self) -> None:
        """Wait for every queued page to be stored; raise the storer's error if any."""
        if self.is_alive():
            self.put(None)  # the end; raises the storer's error instead, if it has failed
            self.join()
        if self.error is not None:
            raise self.error

    def _next_batch(self) -> tuple[list[_Fetched], bool]:
        """The pages to store next (waiting for the first), and whether the end came."""
        first = self.queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.MAX_WAIT_SECONDS
        while len(batch) < self.BATCH_PAGES:
            try:
                if len(batch) < self.MIN_BATCH:
                    item = self.queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                else:
                    item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def run(self) -> None:
        ended = False
        while not ended:
            batch, ended = self._next_batch()
            if not batch or self.error is not None:
                return
            started = time.perf_counter()
            try:
                # The value first, the ledger second: a page in the ledger always has its
                # stored value; a value a crash (or a superseded fetch) leaves out of the
                # ledger is swept by cleanup, by its run's key prefix.
                ledger.check_owner(self.conn, self.run_key, self.owner)
                key = pagestore.page_key(self.run_key, batch[0].page.page_number, self.attempt)
                self.store.set(key, pagestore.join_pages([item.value for item in batch]))
                ledger.add_ready_pages(self.conn, self.run_key, self.owner, [item.page for item in batch], key,
                                       sorted({k for item in batch for k in item.new_keys}),
                                       batch[-1].missing_fields)
                self.values += 1
            except BaseException as exc:  # noqa: BLE001 - handed to the fetch thread
                self.error = exc
            self.seconds += time.perf_counter() - started


def fetch(spec: DatasetPipelineSpec, run: RunContext, ports: Ports) -> Summary:
    """Page through the source, checking each page for schema drift, storing it and recording
    it in the ledger. A retry carries on after the last page stored."""
    renderer = RecordRenderer(spec.columns)
    source_url = ports.source.url_for(spec.source_path)
    owner = f'{run.task_label} try {run.try_number}'
    conn = ports.connect()
    try:
        _start(conn, spec, run, ports)
        # Taken over before reading where to resume: a stale try can add no page after it.
        ledger.start_fetching(conn, run.run_key, source_url, owner, run.try_number)
        resume = ledger.resume_point(conn, run.run_key, source_url)
        if resume.pages:
            log.info('%s: resuming after %d pages (%d rows) already stored', spec.name, resume.pages, resume.rows)
        recorded = ledger.get_run(conn, run.run_key)
        drift = DriftCheck(spec, ledger.last_source_keys(conn, spec.table_name) or frozenset(),
                           set(recorded.source_keys if recorded else ()),
                           set(recorded.missing_fields if recorded else ()))
        page_number, pages, rows = resume.page_number, resume.pages, resume.rows
        started, body_bytes, stored_bytes = time.perf_counter(), 0, 0
        render_seconds = 0.0
        storer = _PageStorer(ports.connect(), ports.pages, run, owner)
        storer.start()
        try:
            for page in (ports.source.pages(resume.url) if resume.url else ()):
                # Checked and rendered here, so that drift or a record that cannot be loaded
                # fails the run before anything is loaded, and the stored page is small.
                rendering = time.perf_counter()
                new_keys = drift.check(page.url, page.results)
                value = pagestore.encode_page(renderer.render(page.results, page.url))
                render_seconds += time.perf_counter() - rendering
                storer.put(_Fetched(ledger.ReadyPage(page_number, page.url, page.next_url, len(page.results)),
                                    value, sorted(new_keys), sorted(drift.missing)))
                page_number, pages, rows = page_number + 1, pages + 1, rows + len(page.results)
                body_bytes += page.body_bytes
                stored_bytes += len(value)
                elapsed = time.perf_counter() - started
                log.info('%s: page %d: %d rows (%d KB, stored as %d KB); %d rows so far, %s',
                         spec.name, page_number - 1, len(page.results), page.body_bytes // 1024,
                         len(value) // 1024, rows, _rate(rows - resume.rows, elapsed))
            storer.finish()
        except Exception as exc:
            if storer.error is None and not isinstance(exc, Fatal):
                # The source failed: store the pages fetched already, so the retry goes on after them.
                with contextlib.suppress(Exception):
                    storer.finish()
            storer.error = storer.error or exc  # stop storing; what is stored stays, for a retry
            storer.finish_quietly()
            if isinstance(storer.error, FetchSuperseded):  # only storing finds it: not ours to record
                raise storer.error from None
            final = run.last_try or isinstance(exc, Fatal)
            state = ledger.FETCH_FAILED if final else ledger.FETCH_RETRYING
            ledger.set_fetch_state(conn, run.run_key, owner, state, error=f'{type(exc).__name__}: {exc}'[:2000])
            raise
        finally:
            storer.conn.close()
        ledger.set_fetch_state(conn, run.run_key, owner, ledger.FETCH_DONE, pages=pages, rows=rows)
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    log.info('%s: fetched %d pages, %d rows in %.1f s (%s); %d KB of JSON stored as %d KB in %d values',
             spec.name, pages, rows, seconds, _rate(rows - resume.rows, seconds), body_bytes // 1024,
             stored_bytes // 1024, storer.values)
    return {'pages': pages, 'rows': rows, 'seconds': round(seconds, 3),
            'render_seconds': round(render_seconds, 3), 'store_seconds': round(storer.seconds, 3),
            'stored_values': storer.values,
            'source_bytes': body_bytes, 'stored_bytes': stored_bytes, 'peak_rss_mb': _peak_rss_mb()}


def _load_one(conn: Connection, spec: DatasetPipelineSpec, run: RunContext, ports: Ports,
              renderer: RecordRenderer) -> tuple[ledger.ClaimedPage | None, float, float]:
    """Claim a ready page and load it, in one committed transaction: (the page or None,
    seconds reading it, seconds copying it)."""
    with conn.cursor() as cursor:
        claimed = ledger.claim_page(cursor, run.run_key)
        if claimed is None:
            conn.commit()
            return None, 0.0, 0.0
        reading = time.perf_counter()
        payload = pagestore.decode_page(ports.pages.get(claimed.variable_key), claimed.variable_key)
        copying = time.perf_counter()
        ports.strategy.load(cursor, spec, run.run_key, renderer, payload, claimed.parts)
        ledger.mark_loaded(cursor, run.run_key, claimed.page_number, run.task_label)
    conn.commit()
    return claimed, copying - reading, time.perf_counter() - copying


def _close_quietly(conn: Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg2.Error):
            conn.close()


def ingest(spec: DatasetPipelineSpec, run: RunContext, ports: Ports, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] | None = None) -> Summary:
    """Claim ready pages one batch at a time and load them, until fetch has finished and
    every page it recorded is loaded (by this task or another). Between looks it waits for
    the run's news in the ledger (pages recorded or loaded, fetch's state: it looks again at
    once), at most a doubling wait (`sleep`, when given, waits instead: tests). Raises Idle
    when there has been nothing to load for a while. Reconnects when the database goes
    away, for up to DATASETS_DB_RETRY_SECONDS: the pages being loaded then rolled back, and
    are claimed again."""
    config = settings.current()
    renderer = RecordRenderer(spec.columns)
    conn: Connection | None = None
    pages = rows = 0
    started = idle_since = clock()
    lost_since: float | None = None
    wait = 0.1
    read_seconds = copy_seconds = 0.0
    try:
        while True:
            unloaded = None
            try:
                if conn is None:
                    conn = ports.connect()
                    ledger.listen_for_news(conn)
                    if lost_since is not None:
                        log.info('%s: connected to the datasets database again after %.0f s', spec.name,
                                 clock() - lost_since)
                        lost_since = None
                claimed, reading, copying = _load_one(conn, spec, run, ports, renderer)
                if claimed is None:
                    state = ledger.get_run(conn, run.run_key)
                    if state is not None and state.fetch_state == ledger.FETCH_DONE:
                        unloaded = ledger.unloaded_pages(conn, run.run_key)
            except psycopg2.Error as exc:
                if not connection_lost(exc):
                    raise
                _close_quietly(conn)
                conn = None
                if lost_since is None:
                    lost_since = clock()
                    log.warning('%s: lost the datasets database (%s); reconnecting for up to %.0f s', spec.name,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                                config.datasets_db_retry_seconds)
                if clock() - lost_since >= config.datasets_db_retry_seconds:
                    raise
                (sleep or time.sleep)(1.0)
                continue
            if claimed is not None:
                read_seconds += reading
                copy_seconds += copying
                # The pages are loaded for good; their stored value is no longer needed.
                # (Cleanup deletes any that a crash leaves here.)
                ports.pages.delete(claimed.variable_key)
                pages, rows = pages + len(claimed.parts), rows + claimed.rows
                last = claimed.page_number + len(claimed.parts) - 1
                log.info('%s: loaded page %s (%d rows); %d rows by this task, %s', spec.name,
                         claimed.page_number if last == claimed.page_number else f'{claimed.page_number}-{last}',
                         claimed.rows, rows, _rate(rows, clock() - started))
                idle_since, wait = clock(), 0.1
                continue
            if state is None:
                raise FetchFailed(f'{spec.name}: the run {run.run_key} is not in the ledger')
            if unloaded == 0:
                break
            if state.fetch_state == ledger.FETCH_FAILED:
                raise FetchFailed(f'{spec.name}: stopping, fetch failed: {state.fetch_error}')
            idle = clock() - idle_since
            if unloaded is None and idle >= config.fetch_stall_seconds:
                raise FetchFailed(f'{spec.name}: fetch has stored no page for {idle:.0f} s')
            # Fetch is done and other transactions hold the pages left (another task is
            # loading them, or a task that died holds them until the server ends its
            # session): wait, so that the run is never published without them.
            fetch_waiting = state.fetch_state in (ledger.FETCH_WAITING, ledger.FETCH_RETRYING)
            if fetch_waiting and idle >= YIELD_TO_FETCH_SECONDS:
                log.info('%s: fetch is %s; handing the worker slot back so that it can run',
                         spec.name, state.fetch_state)
                raise Idle()
            if idle >= config.ingest_idle_reschedule_seconds:
                log.info('%s: nothing to load for %.0f s%s; handing the worker slot back', spec.name, idle,
                         f' ({unloaded} pages held by other tasks)' if unloaded else '')
                raise Idle()
            if sleep is not None:
                sleep(wait)
            elif conn is not None and ledger.wait_for_news(conn, run.run_key, wait):
                continue  # news: look again at once, and wait as briefly next time
            wait = min(wait * 2, config.ingest_poll_max_seconds)
    finally:
        _close_quietly(conn)
    seconds = clock() - started
    log.info('%s: this task loaded %d pages, %d rows in %.1f s (%s)', spec.name, pages, rows, seconds,
             _rate(rows, seconds))
    return {'pages': pages, 'rows': rows, 'seconds': round(seconds, 3), 'read_seconds': round(read_seconds, 3),
            'copy_seconds': round(copy_seconds, 3), 'peak_rss_mb': _peak_rss_mb()}


def publish(spec: DatasetPipelineSpec, run: RunContext, ports: Ports) -> Summary:
    """Publish the loaded pages (the replace strategy: swap the staging table in), once
    fetch is done and every page it stored is loaded; the ledger and the load history
    record it in the same transaction."""
    conn = ports.connect()
    try:
        state = ledger.get_run(conn, run.run_key)
        if state is not None and state.swapped:
            return _published_already(spec, run, conn)
        if state is None or state.fetch_state != ledger.FETCH_DONE:
            raise RunNotSwapped(f'{spec.name}: fetch has not finished (state {state and state.fetch_state})')
        counts = ledger.page_counts(conn, run.run_key)
        loaded = counts.get(ledger.LOADED, 0)
        if loaded != state.pages or sum(counts.values()) != state.pages:
            raise RunNotSwapped(f'{spec.name}: {loaded} of {state.pages} pages loaded ({counts}); not swapping')

        report = _drift_report(spec, state, ledger.last_source_keys(conn, spec.table_name))

        def record(cursor: Cursor, rows_before: int | None, rows_after: int, warnings: tuple[str, ...]) -> None:
            ledger.mark_swapped(cursor, run.run_key)
            ledger.record_load(cursor, run.run_key, rows_before, rows_after,
                               dataclasses.replace(report, warnings=warnings + report.warnings))

        result = ports.strategy.publish(conn, spec, run.run_key, state.rows or 0, record)
        ledger.record_lock_time(conn, run.run_key, result.lock_seconds)
    finally:
        conn.close()
    for warning in report.warnings:
        log.warning('%s', warning)
    log.info('%s: swapped in %s: %s -> %d rows; readers were locked out for %.1f ms; views re-pointed: %s',
             spec.name, spec.table_name, 'no table' if result.rows_before is None else result.rows_before,
             result.rows_after, result.lock_seconds * 1000, ', '.join(result.views_repointed) or 'none')
    return {'table': spec.table_name, 'rows_before': result.rows_before, 'rows_after': result.rows_after,
            'lock_ms': round(result.lock_seconds * 1000, 1), 'views_repointed': list(result.views_repointed),
            'warnings': list(result.warnings + report.warnings), 'unmapped_fields': list(report.unmapped_fields),
            'new_fields': list(report.new_fields), 'missing_fields': list(report.missing_fields)}


def _published_already(spec: DatasetPipelineSpec, run: RunContext, conn: Connection) -> Summary:
    """A retry of publish after its swap committed (the try that swapped died, or lost the
    database, before it could say so): the run is published; say what that swap did."""
    load = ledger.recorded_load(conn, run.run_key)
    if load is None:
        raise RunNotSwapped(f'{spec.name}: the run {run.run_key} is marked swapped but has no load history')
    log.info('%s: an earlier try swapped %s in already (%s -> %d rows); nothing to do', spec.name, spec.table_name,
             'no table' if load.rows_before is None else load.rows_before, load.rows_after)
    return {'table': spec.table_name, 'rows_before': load.rows_before, 'rows_after': load.rows_after,
            'lock_ms': load.lock_ms, 'views_repointed': [], 'warnings': list(load.warnings),
            'unmapped_fields': list(load.unmapped_fields), 'new_fields': list(load.new_fields),
            'missing_fields': list(load.missing_fields), 'swapped_by_an_earlier_try': True}


def _drift_report(spec: DatasetPipelineSpec, state: ledger.Run, last_keys: frozenset[str] | None) -> ledger.LoadReport:
    """What the run found of drift: keys no field maps (and which of them are new since the
    last load), and the fields allowed to be missing that were; warnings for the latter two."""
    unmapped = unmapped_keys(spec, state.source_keys)
    new = [key for key in unmapped if last_keys is not None and key not in last_keys]
    warnings = []
    if new:
        warnings.append(f'{spec.name}: the source sends fields no column maps: {", ".join(new)}')
    if state.missing_fields:
        warnings.append(f'{spec.name}: the source sent no {", ".join(state.missing_fields)} in some pages; '
                        'loaded as NULL there (allow_missing_fields)')
    return ledger.LoadReport(tuple(unmapped), tuple(new), state.missing_fields, tuple(warnings))


def cleanup(spec: DatasetPipelineSpec, run: RunContext, ports: Ports) -> Summary:
    """Runs whatever happened before: deletes the run's stored pages and what the strategy
    left. Fails when the run did not publish, so that the run shows as failed."""
    conn = ports.connect()
    try:
        ledger.ensure_schema(conn)
        state = ledger.get_run(conn, run.run_key)
        keys = set(ledger.variable_keys(conn, run.run_key)) | set(
            ports.pages.keys(pagestore.run_key_prefix(run.run_key)))
        for key in keys:
            ports.pages.delete(key)
        ports.strategy.discard(conn, spec, run.run_key)
        if state is not None:
            ledger.finish_run(conn, run.run_key)
    finally:
        conn.close()
    log.info('%s: deleted %d stored pages and staging table %s', spec.name, len(keys),
             ports.strategy.staging_name(spec, run.run_key))
    if state is None or not state.swapped:
        raise RunNotSwapped(f'{spec.name}: the run did not swap {spec.table_name}; it is unchanged. '
                            'See the failed task above for why.')
    return {'variables_deleted': len(keys), 'finished_at': datetime.datetime.now(datetime.timezone.utc).isoformat()}
