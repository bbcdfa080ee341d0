"""docker-compose.yml, validated offline by the real compose binary (no Docker engine
needed for `config`), and sample.env, checked against what the deploy code requires."""

import json
import os
import shutil
import subprocess

import compose
import pytest

from dataflow.deploy import environment
from tests.support.checkout import ROOT

COMPOSE = os.path.join(os.path.dirname(compose.__file__), 'docker-compose')
SERVICES = {'postgres', 'redis', 'demo-source', 'airflow-init', 'api-server', 'scheduler', 'dag-processor',
            'triggerer', 'worker', 'flower'}


def sample_env():
    values = {}
    with open(os.path.join(ROOT, 'sample.env')) as f:
        for line in f:
            if line.strip() and not line.startswith('#'):
                name, _, value = line.strip().partition('=')
                values[name] = value
    return values


@pytest.fixture
def project(tmp_path):
    """The compose file with its neighbours, and sample.env as the .env a user makes."""
    for name in ('docker-compose.yml', 'init.sql', 'Dockerfile'):
        shutil.copy(os.path.join(ROOT, name), tmp_path)
    shutil.copy(os.path.join(ROOT, 'sample.env'), tmp_path / '.env')
    return tmp_path


def compose_run(project, *args):
    return subprocess.run([COMPOSE, *args], cwd=project, capture_output=True, text=True, timeout=60,
                          env={'PATH': os.environ['PATH'], 'HOME': str(project)})


def test_the_compose_file_is_valid(project):
    result = compose_run(project, 'config', '-q')
    assert result.returncode == 0, result.stderr


def test_the_compose_file_runs_every_component(project):
    config = json.loads(compose_run(project, 'config', '--format', 'json').stdout)
    services = config['services']
    assert set(services) == SERVICES
    assert [p['published'] for p in services['api-server']['ports']] == ['8080']
    assert [p['published'] for p in services['flower']['ports']] == ['5555']
    assert services['worker']['command'] == ['python', '-m', 'dataflow.deploy', 'worker']
    init = [v for v in services['postgres']['volumes'] if v['target'] == '/docker-entrypoint-initdb.d/init.sql']
    assert init and init[0]['source'].endswith('init.sql')
    for name in SERVICES - {'postgres', 'redis', 'airflow-init', 'demo-source'}:
        assert services[name]['depends_on']['airflow-init']['condition'] == 'service_completed_successfully'
        assert services[name]['environment']['AIRFLOW__API_AUTH__JWT_SECRET'] == sample_env()['AIRFLOW__API_AUTH__JWT_SECRET']


def test_a_broken_compose_file_is_caught(project):
    (project / 'docker-compose.yml').write_text('services:\n  api-server:\n    ports: [not-a-port]\n')
    assert compose_run(project, 'config', '-q').returncode != 0


def test_sample_env_starts_a_master_and_a_worker():
    env, warnings = environment.build('master', {**sample_env(), 'HOME': '/home/dataflow'})
    assert warnings == [] and env['AIRFLOW__CORE__AUTH_MANAGER'].endswith('SimpleAuthManager')
    worker, _ = environment.build('worker', {**sample_env(), 'HOME': '/home/dataflow'})
    assert worker['AIRFLOW__CORE__EXECUTION_API_SERVER_URL'] == 'http://api-server:8080/execution/'
