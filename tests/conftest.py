import atexit
import os
import shutil
import tempfile

# Importing Airflow writes airflow.cfg into AIRFLOW_HOME: keep it out of the user's
# ~/airflow, in a directory removed when the session ends.
if 'AIRFLOW_HOME' not in os.environ:
    os.environ['AIRFLOW_HOME'] = tempfile.mkdtemp(prefix='dataflow-test-airflow-')
    atexit.register(shutil.rmtree, os.environ['AIRFLOW_HOME'], ignore_errors=True)

import psycopg2  # noqa: E402
import pytest  # noqa: E402

from devstack import services  # noqa: E402
from devstack.source_api import DemoSource  # noqa: E402
from tests.support.servers import private_directory  # noqa: E402
from tests.support.sources import TEST_HAWK_ID, TEST_HAWK_KEY, hawk_client as new_hawk_client  # noqa: E402


@pytest.fixture
def state_dir():
    """A directory for servers' state (an embedded PostgreSQL may run on it), removed afterwards."""
    with private_directory('state') as path:
        yield path


@pytest.fixture(scope='session')
def pg_admin_dsn():
    """The local PostgreSQL when reachable, else one started for this session."""
    with private_directory('postgres') as state_dir, services.postgres_server(state_dir=state_dir) as dsn:
        yield dsn


@pytest.fixture
def datasets_dsn(pg_admin_dsn):
    """A database of this test's own, dropped afterwards."""
    with services.scratch_database(pg_admin_dsn) as dsn:
        yield dsn


@pytest.fixture
def datasets_conn(datasets_dsn):
    conn = psycopg2.connect(datasets_dsn)
    yield conn
    conn.close()


@pytest.fixture
def source():
    with DemoSource(TEST_HAWK_ID, TEST_HAWK_KEY, page_size=100) as demo_source:
        yield demo_source


@pytest.fixture
def hawk_client(source):
    """A Hawk client of `source` with quick retries."""
    return new_hawk_client(base_url=source.url)
