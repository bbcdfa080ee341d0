"""How a run's pages become the dataset: the LoadStrategy seam. The run engine
(dataflow.runs) calls a strategy and nothing else of the load; `replace` (staging table
+ atomic swap) is the one data-flow ships."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.load.copy import Pages, RecordRenderer


# What publishing records in its own transaction: (cursor, rows before, rows after, warnings).
Record = Callable[[Cursor, int | None, int, tuple[str, ...]], None]


@dataclass(frozen=True)
class Published:
    table: str
    rows_before: int | None   # None: there was no target table
    rows_after: int
    views_repointed: tuple[str, ...]
    lock_seconds: float       # how long readers were locked out
    warnings: tuple[str, ...]  # quality gates that warned


class LoadStrategy(Protocol):
    def staging_name(self, spec: DatasetPipelineSpec, run_key: str) -> str:
        """Where the run's pages go before they are published (the ledger records it)."""

    def prepare(self, conn: Connection, spec: DatasetPipelineSpec, run_key: str) -> str:
        """Make ready to take the run's pages (committed); a name for the logs."""

    def load(self, cursor: Cursor, spec: DatasetPipelineSpec, run_key: str, renderer: RecordRenderer,
             payload: bytes, pages: Pages) -> None:
        """Load rendered pages (`pages`: each one's URL and rows, in the order `payload` holds
        them) in the cursor's transaction (the caller commits)."""

    def publish(self, conn: Connection, spec: DatasetPipelineSpec, run_key: str, expected_rows: int,
                record: Record) -> Published:
        """Make the loaded pages the dataset, all at once; `record(cursor, rows before, rows
        after, warnings)` runs in the same transaction, so that the ledger says so exactly
        when it is so."""

    def discard(self, conn: Connection, spec: DatasetPipelineSpec, run_key: str) -> None:
        """Remove whatever the run left behind (committed); harmless when there is nothing."""
