"""The deployment files agree with each other and with the lock."""

import os
import subprocess
import sys

import yaml

from tests.support.checkout import ROOT



def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def procfile_command(name):
    [line] = [line for line in read(name).splitlines() if line.strip() and not line.startswith('#')]
    return line.split(':', 1)[1].strip()


def test_the_manifest_runs_the_procfiles_commands():
    apps = {app['name']: app for app in yaml.safe_load(read('manifest.yml'))['applications']}
    assert apps['data-flow']['command'] == procfile_command('Procfile-master')
    assert apps['data-flow-worker']['command'] == procfile_command('Procfile-worker')
    assert apps['data-flow-worker']['health-check-type'] == 'process' and apps['data-flow-worker']['no-route']
    assert apps['data-flow']['health-check-http-endpoint'] == '/api/v2/monitor/health'
    assert set(apps['data-flow']['services']) == set(apps['data-flow-worker']['services'])


def test_requirements_txt_is_the_lock_exported():
    exported = subprocess.run(
        [sys.executable, '-m', 'uv', 'export', '--frozen', '--no-dev', '--no-emit-project', '--no-header',
         '--format', 'requirements-txt'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert read('requirements.txt') == exported, 'requirements.txt is stale: run the command in README: Deploying'
    assert 'apache-airflow==3.3.2' in exported and 'celery==5.6.3' in exported


def test_the_buildpack_gets_python_3_11():
    assert read('runtime.txt').strip() == 'python-3.11.x'
