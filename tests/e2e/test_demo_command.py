"""The README's demo command, as a user runs it (with --exit, and names of its own)."""

import os
import subprocess
import sys
import uuid

import pytest

from dataflow.demo import services

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def demo_databases(pg_admin_dsn):
    names = [f'dataflow_demo_test_{uuid.uuid4().hex[:8]}', f'dataflow_demo_test_meta_{uuid.uuid4().hex[:8]}']
    yield names
    if services.reachable(pg_admin_dsn):
        for name in names:
            services.drop_database(pg_admin_dsn, name)


def test_the_demo_loads_the_omis_rows_and_prints_the_ui_address(demo_databases, tmp_path):
    datasets_db, metadata_db = demo_databases
    ui_port = services.free_port()
    result = subprocess.run(
        [sys.executable, '-m', 'dataflow.demo', '--exit', '--rows', '1234', '--port', str(ui_port),
         '--source-port', str(services.free_port()), '--datasets-db', datasets_db, '--metadata-db', metadata_db,
         '--state-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f'Loaded 1234 rows into {datasets_db}.omis_dataset' in result.stdout
    assert f'Airflow UI: http://127.0.0.1:{ui_port}' in result.stdout
