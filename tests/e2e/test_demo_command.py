"""The README's demo command, as a user runs it (with --exit, and names of its own): it
shows progress while the run goes on, and the commands it prints then work by themselves,
after it has stopped (its embedded PostgreSQL too, on a fresh machine)."""

import os
import re
import shlex
import subprocess
import sys
import uuid

import pytest

from devstack import services
from tests.support.checkout import ROOT
ROWS = 1234


@pytest.fixture
def demo_databases(pg_admin_dsn):
    names = [f'dataflow_demo_test_{uuid.uuid4().hex[:8]}', f'dataflow_demo_test_meta_{uuid.uuid4().hex[:8]}']
    yield names
    if services.reachable(pg_admin_dsn):
        for name in names:
            services.drop_database(pg_admin_dsn, name)


def printed_command(output, word):
    """The command the demo printed for `dataflow <word>`, as argv and environment."""
    line = next(line for line in output.splitlines() if re.search(rf'dataflow {word}\b', line))
    words = shlex.split(line.split('  ')[1] if line.startswith('  ') else line)
    env = dict(word.split('=', 1) for word in words if '=' in word and not word.startswith('-'))
    argv = [word for word in words if word not in {f'{k}={v}' for k, v in env.items()}]
    return argv[:argv.index(word) + 2 if word == 'show' else argv.index(word) + 1], env


@pytest.mark.demo
def test_the_demo_loads_the_omis_rows_and_prints_what_works_afterwards(demo_databases, state_dir):
    datasets_db, metadata_db = demo_databases
    ui_port = services.free_port()
    result = subprocess.run(
        [sys.executable, '-m', 'devstack', '--exit', '--rows', str(ROWS), '--port', str(ui_port),
         '--source-port', str(services.free_port()), '--datasets-db', datasets_db, '--metadata-db', metadata_db,
         '--state-dir', state_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f'Loaded {ROWS} rows into {datasets_db}.omis_dataset' in result.stdout
    assert f'Airflow UI: http://127.0.0.1:{ui_port}' in result.stdout
    assert f'Datasets:   http://127.0.0.1:{ui_port}/plugin/datasets' in result.stdout
    # Progress while it runs, from the ledger: the last line says everything was loaded.
    progress = re.findall(r'\[ *\d+ s\] (.*)', result.stdout)
    assert progress[-1] == f'fetched 2 pages ({ROWS:,} rows), all of them; loaded 2 pages ({ROWS:,} rows); swapped', \
        result.stdout

    # The printed commands, run as printed, after the demo (and any server it started) stopped.
    for word, expected in (('list', rf'OMISDatasetPipeline .* UTC, {ROWS} rows'),
                           ('show', rf'{ROWS:,} rows; last loaded')):
        argv, env = printed_command(result.stdout, word)
        shown = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                               timeout=300)
        assert shown.returncode == 0 and re.search(expected, shown.stdout), (argv, shown.stdout, shown.stderr)
