"""One pipeline run in one process, through the same steps Airflow runs (dataflow.runs.steps):
fetch in one thread, ingest in others, both overlapped; then publish and cleanup. Pages
pass through a page store in memory; the ledger, the staging table, the quality gates,
the swap and the load history are the same as on Airflow.

This is `dataflow run PIPELINE`, and the single-process baseline of the benchmark.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.errors import FetchFailed, RunFailed, RunNotSwapped
from dataflow.runs import ledger, pagestore, steps
from dataflow.runs.steps import Ports, RunContext, Summary

log = logging.getLogger(__name__)

# How often the progress callback is told how far the run has got.
PROGRESS_SECONDS = 1.0


@dataclass(frozen=True)
class LocalResult:
    pipeline: str
    run_key: str
    pages: int
    rows: int
    seconds: float
    published: Summary   # what the publish step reports: rows before and after, lock time, ...


Progress = Callable[[ledger.Progress, float], None]


def run(spec: DatasetPipelineSpec, ports: Ports, run_id: str | None = None, ingest_threads: int = 2,
        progress: Progress | None = None) -> LocalResult:
    """Run `spec` once; RunFailed naming the pipeline (the target unchanged) if any step
    fails. `progress(progress, seconds)` is called about every second while it runs."""
    started = time.perf_counter()
    run_id = run_id or time.strftime('local-%Y%m%dT%H%M%S')
    context = RunContext(pagestore.run_key(spec.name, run_id, 0), try_number=1, max_tries=1,
                         task_label=f'local@{socket.gethostname()}:{os.getpid()}')
    summaries: dict[str, Summary] = {}
    errors: list[BaseException] = []
    finished = threading.Event()

    def step(name: str, function: Callable[[], Summary]) -> None:
        try:
            summaries[name] = function()
        except BaseException as exc:  # noqa: BLE001 - raised below, as the run's failure
            errors.append(exc)

    def ingest_until_done() -> Summary:
        # In one process there is no worker slot to give back: an idle ingest looks again.
        while True:
            try:
                return steps.ingest(spec, context, ports)
            except steps.Idle:
                continue

    watcher = None
    if progress is not None:
        watcher = threading.Thread(target=_watch, name='progress', daemon=True,
                                   args=(ports, context.run_key, progress, finished, started))
        watcher.start()
    fetcher = threading.Thread(target=step, name='fetch', args=('fetch', lambda: steps.fetch(spec, context, ports)))
    fetcher.start()
    try:
        step('check', lambda: steps.check_if_table_exists(spec, context, ports))
        step('create', lambda: steps.create_target_table(spec, context, ports))
        loaders = [threading.Thread(target=step, name=f'ingest-{n}', args=(f'ingest-{n}', ingest_until_done))
                   for n in range(0 if errors else ingest_threads)]
        for thread in loaders:
            thread.start()
        for thread in [fetcher, *loaders]:
            thread.join()
        if not errors:
            step('publish', lambda: steps.publish(spec, context, ports))
    finally:
        finished.set()
        step('cleanup', lambda: steps.cleanup(spec, context, ports))
        if watcher is not None:
            watcher.join()
    if errors:
        # The step that failed first, not the others stopping because of it.
        cause = next((e for e in errors if not isinstance(e, (FetchFailed, RunNotSwapped))), errors[0])
        raise RunFailed(spec.name, cause) from cause
    seconds = time.perf_counter() - started
    fetched, published = summaries['fetch'], summaries['publish']
    log.info('%s: %d rows in %d pages in %.1f s (%.0f rows/s); %s rows %s -> %s', spec.name, fetched['rows'],
             fetched['pages'], seconds, fetched['rows'] / seconds if seconds else 0, spec.table_name,
             published['rows_before'], published['rows_after'])
    return LocalResult(spec.name, context.run_key, fetched['pages'], fetched['rows'], seconds, published)


def _watch(ports: Ports, run_key: str, progress: Progress, finished: threading.Event, started: float) -> None:
    conn = ports.connect()
    try:
        while True:
            done = finished.wait(PROGRESS_SECONDS)
            found = ledger.progress(conn, run_key)
            if found is not None:
                progress(found, time.perf_counter() - started)
            if done:
                return
    except Exception:  # noqa: BLE001 - progress is a courtesy: never fail the run for it
        log.debug('progress stopped', exc_info=True)
    finally:
        conn.close()
