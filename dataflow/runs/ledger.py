"""The bookkeeping of dataset runs, in the datasets database (schema `dataflow`).

`runs` has one row per run attempt (see dataflow.runs.pagestore.run_key): its staging table, what fetch
reports (state, page and row counts, error), and when the swap happened. `pages` has one
row per fetched page: its URL, its key in the page store, and whether it is loaded.
`load_history` has one row per swap, for analysts: which table, rows before and after,
the run, when it started and ended, and the source it came from.

Ingest tasks claim a page with SELECT ... FOR UPDATE SKIP LOCKED and mark it loaded in the
same transaction as its COPY, so a page is loaded exactly once: if a task dies mid-page
its transaction rolls back, the row lock goes with its connection, and the page is
claimed again by another task or the retry.

One fetch at a time writes a run's pages. A fetch try takes the run over (`start_fetching`:
its owner and try number; an earlier try can never take it back), and every later write of
fetch (a page, its state) is conditional on still being the owner, in the transaction that
writes. A fetch that was given up for lost (its worker cut off, Airflow's retry started
elsewhere) and wakes up later therefore writes nothing: it gets FetchSuperseded.
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from dataflow.errors import FetchSuperseded

SCHEMA = 'dataflow'

# Page states.
READY = 'ready'         # it is stored; an ingest task may claim it
LOADED = 'loaded'       # copied into the staging table

# Fetch states.
FETCH_WAITING = 'waiting'
FETCH_RUNNING = 'running'
FETCH_RETRYING = 'retrying'  # failed, and Airflow will try again
FETCH_DONE = 'done'
FETCH_FAILED = 'failed'      # failed for good: ingest tasks stop

_DDL = """
CREATE SCHEMA IF NOT EXISTS dataflow;
CREATE TABLE IF NOT EXISTS dataflow.runs (
    run_key text PRIMARY KEY,
    pipeline text NOT NULL,
    target_table text NOT NULL,
    staging_table text NOT NULL,
    fetch_state text NOT NULL DEFAULT 'waiting',
    fetch_error text,
    pages integer,
    rows bigint,
    fetch_heartbeat timestamptz,
    swapped_at timestamptz,
    finished_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS dataflow.pages (
    run_key text NOT NULL REFERENCES dataflow.runs ON DELETE CASCADE,
    page_number integer NOT NULL,
    url text NOT NULL,
    next_url text,
    variable_key text NOT NULL,
    rows integer,
    state text NOT NULL,
    loaded_by text,
    PRIMARY KEY (run_key, page_number)
);
CREATE TABLE IF NOT EXISTS dataflow.load_history (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    pipeline text NOT NULL,
    run_key text NOT NULL,
    rows_before bigint,
    rows_after bigint NOT NULL,
    source_url text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS load_history_table_finished ON dataflow.load_history (table_name, finished_at DESC);
"""
# Columns added since the tables were first made: (table, column, definition). Added only
# when missing, as ALTER TABLE locks the table out even when there is nothing to add.
_ADDED_COLUMNS = (
    ('runs', 'source_url', 'text'),
    ('runs', 'source_keys', "text[] NOT NULL DEFAULT '{}'"),
    ('runs', 'missing_fields', "text[] NOT NULL DEFAULT '{}'"),
    ('load_history', 'source_keys', "text[] NOT NULL DEFAULT '{}'"),
    ('load_history', 'unmapped_fields', "text[] NOT NULL DEFAULT '{}'"),
    ('load_history', 'new_fields', "text[] NOT NULL DEFAULT '{}'"),
    ('load_history', 'missing_fields', "text[] NOT NULL DEFAULT '{}'"),
    ('load_history', 'warnings', "text[] NOT NULL DEFAULT '{}'"),
    ('load_history', 'lock_ms', 'double precision'),
    ('runs', 'fetch_owner', 'text'),
    ('runs', 'fetch_try', 'integer'),
    # The first page of the batch the page was stored with (one stored value, claimed and
    # loaded as one); NULL in ledgers written before pages were stored in batches.
    ('pages', 'stored_with', 'integer'),
)
# Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog; serialise them.
_DDL_LOCK = 0x64617461666c6f77  # 'dataflow'


def _exists(cursor: Cursor, table: str) -> bool:
    cursor.execute('SELECT to_regclass(%s) IS NOT NULL', (table,))
    return bool(cursor.fetchone()[0])  # type: ignore[index]


def _columns(cursor: Cursor) -> set[tuple[str, str]]:
    cursor.execute('SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s',
                   (SCHEMA,))
    return set(cursor.fetchall())


def ensure_schema(conn: Connection) -> None:
    """Create the ledger tables, and add the columns they lack (committed)."""
    needed = {('pages', 'run_key')} | {(table, column) for table, column, _ in _ADDED_COLUMNS}
    with conn.cursor() as cursor:
        if needed <= _columns(cursor):
            conn.commit()
            return
        cursor.execute('SELECT pg_advisory_xact_lock(%s)', (_DDL_LOCK,))
        cursor.execute(_DDL)
        present = _columns(cursor)
        for table, column, definition in _ADDED_COLUMNS:
            if (table, column) not in present:
                cursor.execute(sql.SQL('ALTER TABLE {} ADD COLUMN {} {}').format(
                    sql.Identifier(SCHEMA, table), sql.Identifier(column), sql.SQL(definition)))
    conn.commit()


@dataclass(frozen=True)
class Run:
    run_key: str
    pipeline: str
    target_table: str
    staging_table: str
    fetch_state: str
    fetch_error: str | None
    pages: int | None
    rows: int | None
    swapped: bool
    source_url: str | None
    source_keys: tuple[str, ...]      # every key the run's records had
    missing_fields: tuple[str, ...]   # mapped fields allowed to be missing, found missing


def start_run(conn: Connection, run_key: str, pipeline: str, target_table: str, staging_table: str) -> None:
    """Record the run if it is not recorded yet (committed)."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO dataflow.runs (run_key, pipeline, target_table, staging_table)
            VALUES (%s, %s, %s, %s) ON CONFLICT (run_key) DO NOTHING
            """,
            (run_key, pipeline, target_table, staging_table),
        )
    conn.commit()


def get_run(conn: Connection, run_key: str) -> Run | None:
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT run_key, pipeline, target_table, staging_table, fetch_state, fetch_error, pages, rows,
                   swapped_at IS NOT NULL, source_url, source_keys, missing_fields
            FROM dataflow.runs WHERE run_key = %s
            """,
            (run_key,),
        )
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        return None
    (run_key, pipeline, target, staging, fetch_state, fetch_error, pages, rows, swapped, source_url, source_keys,
     missing_fields) = row
    return Run(run_key, pipeline, target, staging, fetch_state, fetch_error, pages, rows, swapped, source_url,
               tuple(source_keys), tuple(missing_fields))


def _unless_superseded(conn: Connection, cursor: Cursor, run_key: str, owner: str) -> None:
    """After a statement meant to touch the run's row once as `owner`: roll back and raise
    FetchSuperseded, naming who holds the run now, if it did not."""
    if cursor.rowcount == 1:
        return
    cursor.execute('SELECT fetch_owner, fetch_try FROM dataflow.runs WHERE run_key = %s', (run_key,))
    row = cursor.fetchone()
    holder = f'{row[0]} (try {row[1]})' if row else 'nobody: the run is not in the ledger'
    conn.rollback()
    raise FetchSuperseded(f'fetch {owner} no longer fetches run {run_key}: it is now held by {holder}; '
                          'this fetch stops without writing')


def start_fetching(conn: Connection, run_key: str, source_url: str, owner: str, try_number: int) -> None:
    """Take the run's fetch over: `owner`, try `try_number`, fetches from `source_url` now
    (committed). FetchSuperseded when a later try has taken it over already."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE dataflow.runs SET fetch_state = %s, source_url = %s, fetch_owner = %s, fetch_try = %s,
                   fetch_heartbeat = now()
            WHERE run_key = %s AND coalesce(fetch_try, 0) <= %s
            """,
            (FETCH_RUNNING, source_url, owner, try_number, run_key, try_number),
        )
        _unless_superseded(conn, cursor, run_key, owner)
    conn.commit()


def set_fetch_state(conn: Connection, run_key: str, owner: str, state: str, error: str | None = None,
                    pages: int | None = None, rows: int | None = None) -> None:
    """Record fetch's state, if `owner` still holds the run (committed); else FetchSuperseded."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            UPDATE dataflow.runs SET fetch_state = %s, fetch_error = %s, pages = %s, rows = %s,
                   fetch_heartbeat = now()
            WHERE run_key = %s AND fetch_owner = %s
            """,
            (state, error, pages, rows, run_key, owner),
        )
        _unless_superseded(conn, cursor, run_key, owner)
        _notify(cursor, run_key)
    conn.commit()


def check_owner(conn: Connection, run_key: str, owner: str) -> None:
    """FetchSuperseded unless `owner` still holds the run's fetch (before storing a page)."""
    with conn.cursor() as cursor:
        cursor.execute('SELECT 1 FROM dataflow.runs WHERE run_key = %s AND fetch_owner = %s', (run_key, owner))
        _unless_superseded(conn, cursor, run_key, owner)
    conn.commit()


@dataclass(frozen=True)
class ResumePoint:
    page_number: int     # the next page's number
    url: str | None      # the next page's URL; None when every page was fetched
    pages: int           # pages already stored
    rows: int            # rows already stored


def resume_point(conn: Connection, run_key: str, first_url: str) -> ResumePoint:
    """Where fetch carries on after a retry: after the last page that was stored."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT page_number, next_url,
                   count(*) OVER (), coalesce(sum(rows) OVER (), 0)
            FROM dataflow.pages WHERE run_key = %s
            ORDER BY page_number DESC LIMIT 1
            """,
            (run_key,),
        )
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        return ResumePoint(0, first_url, 0, 0)
    last_page, next_url, pages, rows = row
    return ResumePoint(last_page + 1, next_url, pages, int(rows))


@dataclass(frozen=True)
class ReadyPage:
    """A fetched page, as the ledger records it."""

    page_number: int
    url: str
    next_url: str | None
    rows: int


def add_ready_pages(conn: Connection, run_key: str, owner: str, pages: Sequence[ReadyPage], variable_key: str,
                    new_keys: list[str] | None = None, missing_fields: list[str] | None = None) -> None:
    """Record a batch of consecutive pages stored together under `variable_key`, ready to
    be claimed (committed), with the keys their records brought that the run had not seen
    and the allowed fields they lacked; only while `owner` holds the run's fetch (else
    FetchSuperseded, and nothing is written). A page is recorded once: a fetch try carries
    on after the pages recorded before it."""
    head = pages[0].page_number
    with conn.cursor() as cursor:
        # The run's row first: its lock orders this write after a takeover by a later try.
        cursor.execute(
            """
            UPDATE dataflow.runs SET fetch_heartbeat = now(),
                source_keys = ARRAY(SELECT DISTINCT k FROM unnest(source_keys || %s::text[]) k ORDER BY k),
                missing_fields = ARRAY(SELECT DISTINCT k FROM unnest(missing_fields || %s::text[]) k ORDER BY k)
            WHERE run_key = %s AND fetch_owner = %s
            """,
            (new_keys or [], missing_fields or [], run_key, owner),
        )
        _unless_superseded(conn, cursor, run_key, owner)
        execute_values(
            cursor,
            """
            INSERT INTO dataflow.pages (run_key, page_number, url, next_url, variable_key, rows, state, stored_with)
            VALUES %s ON CONFLICT (run_key, page_number) DO NOTHING
            """,
            [(run_key, p.page_number, p.url, p.next_url, variable_key, p.rows, READY, head) for p in pages],
        )
        if cursor.rowcount != len(pages):
            conn.rollback()
            raise FetchSuperseded(f'fetch {owner}: page {head} of run {run_key} is recorded already '
                                  f'({pages[0].url}); this fetch stops without writing')
        _notify(cursor, run_key)
    conn.commit()


@dataclass(frozen=True)
class ClaimedPage:
    """A claimed batch of pages stored together: the first page's number, and each page's
    URL and rows, in order (a batch of one, from ledgers written before batches)."""

    page_number: int
    variable_key: str
    parts: tuple[tuple[str, int], ...]

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.parts)

    @property
    def url(self) -> str:
        return self.parts[0][0]


def claim_page(cursor: Cursor, run_key: str) -> ClaimedPage | None:
    """Lock one ready batch of pages for this transaction (its first page's row: nobody
    claims the others), or None. Commit after `mark_loaded`."""
    cursor.execute(
        """
        SELECT page_number, variable_key FROM dataflow.pages
        WHERE run_key = %s AND state = %s AND (stored_with IS NULL OR stored_with = page_number)
        ORDER BY page_number
        FOR UPDATE SKIP LOCKED LIMIT 1
        """,
        (run_key, READY),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    page_number, variable_key = row
    cursor.execute(
        """
        SELECT url, rows FROM dataflow.pages
        WHERE run_key = %s AND (page_number = %s OR stored_with = %s) ORDER BY page_number
        """,
        (run_key, page_number, page_number),
    )
    return ClaimedPage(page_number, variable_key, tuple((url, rows or 0) for url, rows in cursor.fetchall()))


def mark_loaded(cursor: Cursor, run_key: str, page_number: int, loaded_by: str) -> None:
    """Mark the batch claimed as `page_number` loaded."""
    cursor.execute(
        """
        UPDATE dataflow.pages SET state = %s, loaded_by = %s
        WHERE run_key = %s AND (page_number = %s OR stored_with = %s)
        """,
        (LOADED, loaded_by, run_key, page_number, page_number),
    )
    _notify(cursor, run_key)


# Ingest tasks wait for news of their run on this channel instead of polling blindly: pages
# recorded, pages loaded (the last ones let every task finish), fetch's state. Sent with the
# transaction that makes the news (PostgreSQL delivers NOTIFY at commit); the payload is the
# run's key.
NEWS_CHANNEL = 'dataflow_run_news'


def _notify(cursor: Cursor, run_key: str) -> None:
    cursor.execute('SELECT pg_notify(%s, %s)', (NEWS_CHANNEL, run_key))


def listen_for_news(conn: Connection) -> None:
    """Have `conn` receive the runs' news (committed), for `wait_for_news`."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('LISTEN {}').format(sql.Identifier(NEWS_CHANNEL)))
    conn.commit()


def wait_for_news(conn: Connection, run_key: str, timeout: float) -> bool:
    """Wait, outside any transaction of `conn` (see listen_for_news), until news of the run
    arrives or `timeout` seconds pass; whether news came. Other runs' news is dropped. A
    connection that fails while waiting counts as news: the caller's next statement finds
    out what happened to it."""
    deadline = time.monotonic() + timeout
    while True:
        news = [n for n in conn.notifies if n.payload == run_key]
        conn.notifies.clear()
        if news:
            return True
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0 or not select.select([conn], [], [], remaining)[0]:
                return False
            conn.poll()
        except (psycopg2.Error, OSError, ValueError):  # ValueError: a closed connection's fileno
            return True


def page_counts(conn: Connection, run_key: str) -> dict[str, int]:
    """{state: number of pages} of the run."""
    with conn.cursor() as cursor:
        cursor.execute(
            'SELECT state, count(*) FROM dataflow.pages WHERE run_key = %s GROUP BY state', (run_key,)
        )
        counts = dict(cursor.fetchall())
    conn.commit()
    return counts


def unloaded_pages(conn: Connection, run_key: str) -> int:
    """How many of the run's recorded pages are not loaded yet, claimed or not."""
    with conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM dataflow.pages WHERE run_key = %s AND state = %s', (run_key, READY))
        count = int(cursor.fetchone()[0])  # type: ignore[index]
    conn.commit()
    return count


def variable_keys(conn: Connection, run_key: str) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute('SELECT variable_key FROM dataflow.pages WHERE run_key = %s', (run_key,))
        keys = [r[0] for r in cursor.fetchall()]
    conn.commit()
    return keys


def mark_swapped(cursor: Cursor, run_key: str) -> None:
    """Inside the swap's transaction, so the record and the swap commit together."""
    cursor.execute('UPDATE dataflow.runs SET swapped_at = now() WHERE run_key = %s', (run_key,))


@dataclass(frozen=True)
class LoadReport:
    """What a load found in the source, besides its rows (the load history keeps it)."""

    unmapped_fields: tuple[str, ...] = ()   # keys no field maps
    new_fields: tuple[str, ...] = ()        # ... of which the last load's source did not send
    missing_fields: tuple[str, ...] = ()    # mapped fields allowed to be missing, found missing
    warnings: tuple[str, ...] = ()          # quality gates and drift that warned


def record_load(cursor: Cursor, run_key: str, rows_before: int | None, rows_after: int,
                report: LoadReport = LoadReport()) -> None:
    """Inside the swap's transaction: the load history row of this swap."""
    cursor.execute(
        """
        INSERT INTO dataflow.load_history (table_name, pipeline, run_key, rows_before, rows_after, source_url,
                                           started_at, source_keys, unmapped_fields, new_fields, missing_fields,
                                           warnings)
        SELECT target_table, pipeline, run_key, %s, %s, coalesce(source_url, ''), created_at, source_keys, %s, %s,
               %s, %s
        FROM dataflow.runs WHERE run_key = %s
        """,
        (rows_before, rows_after, list(report.unmapped_fields), list(report.new_fields),
         list(report.missing_fields), list(report.warnings), run_key),
    )


def record_lock_time(conn: Connection, run_key: str, lock_seconds: float) -> None:
    """How long the swap of a load kept readers out, known once it committed (committed)."""
    with conn.cursor() as cursor:
        cursor.execute('UPDATE dataflow.load_history SET lock_ms = %s WHERE run_key = %s',
                       (round(lock_seconds * 1000, 1), run_key))
    conn.commit()


@dataclass(frozen=True)
class RecordedLoad:
    """A swap as the load history recorded it."""

    table_name: str
    rows_before: int | None
    rows_after: int
    lock_ms: float | None
    unmapped_fields: tuple[str, ...]
    new_fields: tuple[str, ...]
    missing_fields: tuple[str, ...]
    warnings: tuple[str, ...]


def recorded_load(conn: Connection, run_key: str) -> RecordedLoad | None:
    """The load history's record of the run's swap, or None if it did not swap."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, rows_before, rows_after, lock_ms, unmapped_fields, new_fields, missing_fields, warnings
            FROM dataflow.load_history WHERE run_key = %s ORDER BY finished_at DESC LIMIT 1
            """,
            (run_key,),
        )
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        return None
    table, before, after, lock_ms, unmapped, new, missing, warnings = row
    return RecordedLoad(table, before, after, lock_ms, tuple(unmapped), tuple(new), tuple(missing), tuple(warnings))


def last_source_keys(conn: Connection, table: str) -> frozenset[str] | None:
    """The keys the source sent at the table's last load, or None before any load."""
    with conn.cursor() as cursor:
        if not _exists(cursor, 'dataflow.load_history'):
            conn.commit()
            return None
        cursor.execute('SELECT source_keys FROM dataflow.load_history WHERE table_name = %s '
                       'ORDER BY finished_at DESC LIMIT 1', (table,))
        row = cursor.fetchone()
    conn.commit()
    return None if row is None else frozenset(row[0])


def last_loads(conn: Connection) -> dict[str, tuple[Any, int]]:
    """{table name: (finished_at, rows_after)} of each table's latest load ({} before any)."""
    with conn.cursor() as cursor:
        if not _exists(cursor, 'dataflow.load_history'):
            conn.commit()
            return {}
        cursor.execute(
            """
            SELECT DISTINCT ON (table_name) table_name, finished_at, rows_after
            FROM dataflow.load_history ORDER BY table_name, finished_at DESC
            """
        )
        loads = {row[0]: row[1:] for row in cursor.fetchall()}
    conn.commit()
    return loads


@dataclass(frozen=True)
class Progress:
    """How far a run has got, for people watching it."""

    fetch_state: str
    pages_fetched: int
    rows_fetched: int
    pages_loaded: int
    rows_loaded: int
    swapped: bool

    def describe(self) -> str:
        fetched = f'fetched {self.pages_fetched} pages ({self.rows_fetched:,} rows)'
        if self.fetch_state == FETCH_DONE:
            fetched += ', all of them'
        return f'{fetched}; loaded {self.pages_loaded} pages ({self.rows_loaded:,} rows)'


def progress(conn: Connection, run_key: str) -> Progress | None:
    """The run's progress, or None before it is recorded. Pages are counted from their
    rows while the run goes on (cleanup deletes those rows; then the run's totals stand)."""
    with conn.cursor() as cursor:
        if not _exists(cursor, 'dataflow.runs'):
            conn.commit()
            return None
        cursor.execute(
            """
            SELECT r.fetch_state, r.pages, r.rows, r.swapped_at IS NOT NULL,
                   count(p.page_number), coalesce(sum(p.rows), 0),
                   count(p.page_number) FILTER (WHERE p.state = %s),
                   coalesce(sum(p.rows) FILTER (WHERE p.state = %s), 0)
            FROM dataflow.runs r LEFT JOIN dataflow.pages p USING (run_key)
            WHERE r.run_key = %s
            GROUP BY r.run_key
            """,
            (LOADED, LOADED, run_key),
        )
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        return None
    fetch_state, pages, rows, swapped, pages_seen, rows_seen, pages_loaded, rows_loaded = row
    if swapped and not pages_seen:  # finished: its page rows are gone, every page was loaded
        pages_seen = pages_loaded = pages or 0
        rows_seen = rows_loaded = rows or 0
    return Progress(fetch_state, pages_seen, int(rows_seen), pages_loaded, int(rows_loaded), swapped)


def finish_run(conn: Connection, run_key: str) -> None:
    """Forget the run's pages and mark it finished (committed)."""
    with conn.cursor() as cursor:
        cursor.execute('DELETE FROM dataflow.pages WHERE run_key = %s', (run_key,))
        cursor.execute('UPDATE dataflow.runs SET finished_at = now() WHERE run_key = %s', (run_key,))
    conn.commit()
