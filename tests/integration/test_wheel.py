"""What a deployment installs: the built wheel holds every module of dataflow/ (the DAG
files and the SSO config included) and nothing of devstack/, the tests or the demo."""

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.support.checkout import ROOT, working_tree_copy


@pytest.mark.fresh_checkout
def test_the_wheel_ships_dataflow_and_no_demo_code():
    with tempfile.TemporaryDirectory(prefix='dataflow-test-wheel-') as scratch:
        checkout = Path(scratch) / 'data-flow'
        working_tree_copy(checkout)  # what git holds: no stray build artefacts
        subprocess.run([sys.executable, '-m', 'uv', 'build', '--wheel', '--out-dir', scratch, '--quiet'],
                       cwd=checkout, check=True, timeout=600, capture_output=True)
        [wheel] = Path(scratch).glob('data_flow-*.whl')
        names = zipfile.ZipFile(wheel).namelist()
    shipped = {name for name in names if name.endswith('.py')}
    expected = {str(path.relative_to(ROOT)) for path in (ROOT / 'dataflow').rglob('*.py')
                if '__pycache__' not in path.parts}
    assert shipped == expected
    assert not [name for name in names if name.startswith(('devstack/', 'tests/', 'bench/')) or 'demo' in name]
    assert 'dataflow/airflow/dags/dataset_pipelines.py' in shipped and 'dataflow/web/webserver_config.py' in shipped
