"""The datasets database of a local run (the demo), found again by later commands.

The demo records its datasets database in DATAFLOW_STATE_DIR/datasets-db.json. `dataflow`
commands given neither --dsn nor a `datasets_db` connection use that record. When the
database is on the embedded PostgreSQL (pgserver, a development dependency), which the demo
stops when it exits, the command starts it again for its own duration, or shares it while
the demo runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from types import ModuleType

from dataflow import settings

RECORD_NAME = 'datasets-db.json'


def record_path(state_dir: str | None = None) -> str:
    return os.path.join(state_dir or settings.current().dataflow_state_dir, RECORD_NAME)


def record(dsn: str, embedded_data_dir: str | None = None, state_dir: str | None = None) -> None:
    """Remember the local datasets database (`embedded_data_dir`: the pgserver data directory)."""
    path = record_path(state_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as out:
        json.dump({'dsn': dsn, 'embedded_data_dir': embedded_data_dir}, out)


def recorded(state_dir: str | None = None) -> tuple[str, str | None] | None:
    """(dsn, embedded data dir or None) as recorded, or None when nothing was."""
    try:
        with open(record_path(state_dir)) as saved:
            found = json.load(saved)
    except FileNotFoundError:
        return None
    return str(found['dsn']), found.get('embedded_data_dir')


def _pgserver() -> ModuleType:
    # pgserver asks platformdirs for a runtime directory it does not need, which warns on
    # every start where XDG_RUNTIME_DIR is unset (containers, CI, ssh sessions).
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='XDG_RUNTIME_DIR is not set')
        import pgserver
    return pgserver


@contextlib.contextmanager
def embedded_server(data_dir: str) -> Iterator[str]:
    """Start the embedded PostgreSQL on `data_dir` (or share it, if running); yield its admin DSN.
    It is stopped on exit unless another process still uses it."""
    import atexit

    server = _pgserver().get_server(data_dir, cleanup_mode='stop')
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        # In 'stop' mode pgserver leaves its exit hook registered; it would run again at
        # interpreter exit and log to streams that may be closed by then.
        atexit.unregister(server._cleanup)


def embedded_psql() -> str:
    """The psql that comes with the embedded server (a fresh machine may have no other)."""
    return os.path.join(os.path.dirname(str(_pgserver().__file__)), 'pginstall', 'bin', 'psql')


@contextlib.contextmanager
def recorded_database(state_dir: str | None = None) -> Iterator[str | None]:
    """Yield the DSN of the recorded local datasets database, the embedded server started
    for as long as it is needed; None when nothing is recorded."""
    found = recorded(state_dir)
    if found is None:
        yield None
        return
    dsn, data_dir = found
    if data_dir is None:
        yield dsn
        return
    import psycopg2.extensions

    # The server's socket directory may differ from one start to the next: keep only the
    # database name from the record.
    dbname = psycopg2.extensions.parse_dsn(dsn)['dbname']
    with embedded_server(data_dir) as admin_dsn:
        yield psycopg2.extensions.make_dsn(admin_dsn, dbname=dbname)
