"""One dataset pipeline run in one process: fetch every page, COPY it into a staging
table, swap it in. The Airflow DAG splits these same steps across tasks; this is the
path for local runs and the benchmark baseline."""

import logging
import time
from dataclasses import dataclass

from dataflow import quality, tables
from dataflow.errors import DataflowError, naming_pipeline
from dataflow.records import RecordRenderer

log = logging.getLogger(__name__)


class PipelineRunError(DataflowError):
    """A run failed; names the pipeline. The target table is as it was before the run."""

    def __init__(self, pipeline, cause):
        self.pipeline = pipeline
        self.cause = cause
        super().__init__(naming_pipeline(pipeline, cause))


@dataclass(frozen=True)
class SyncResult:
    pipeline: str
    pages: int
    rows: int
    seconds: float
    swap: tables.SwapResult


def sync(spec, client, conn, run_id):
    """Load `spec`'s source into its table through a staging table, and swap it in.

    On any failure the staging table is dropped and the target is left as it was.
    """
    started = time.perf_counter()
    staging = tables.staging_table_name(spec.table_name, run_id)
    renderer = RecordRenderer(spec.columns)
    pages = rows = 0
    try:
        tables.drop_table(conn, staging)
        tables.create_table(conn, staging, spec.columns)
        conn.commit()
        with conn.cursor() as cursor:
            for page in client.pages(spec.source_url):
                rows += tables.copy_page(cursor, staging, renderer, page.results, page.url)
                pages += 1
        conn.commit()
        gates = quality.check(conn, spec, staging)
        swap = tables.swap(conn, staging, spec.table_name, counts=(gates.rows_before, gates.rows_after))
    except DataflowError as exc:
        _drop_quietly(conn, staging)
        raise PipelineRunError(spec.name, exc) from exc
    except BaseException:
        _drop_quietly(conn, staging)
        raise
    seconds = time.perf_counter() - started
    log.info('%s: %d rows in %d pages in %.1f s (%.0f rows/s); %s rows %s -> %s',
             spec.name, rows, pages, seconds, rows / seconds if seconds else 0, spec.table_name,
             swap.rows_before, swap.rows_after)
    return SyncResult(spec.name, pages, rows, seconds, swap)


def _drop_quietly(conn, table):
    try:
        conn.rollback()
        tables.drop_table(conn, table)
        conn.commit()
    except Exception:  # noqa: BLE001 - the original error matters more
        log.exception('Could not drop staging table %s', table)
