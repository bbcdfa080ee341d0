"""Workers load data-flow's engine once, before their pool forks (dataflow.airflow.celery_config),
and not the pipeline classes: checked in a fresh interpreter, as a Celery worker starts."""

import json
import subprocess
import sys

PROBE = '''
import json, sys
from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules
from dataflow.airflow import celery_config
before = sorted(m for m in sys.modules if m.startswith('dataflow.airflow.factory'))
import_modules.send(sender=None)  # what a Celery worker sends before forking its pool
print(json.dumps({
    'airflow_config': celery_config.CELERY_CONFIG is DEFAULT_CELERY_CONFIG,
    'before': before,
    'engine': [m for m in ('dataflow.airflow.factory', 'dataflow.airflow.tasks', 'dataflow.runs.steps', 'pglast',
                           'boto3') if m in sys.modules],
    'pipelines': sorted(m for m in sys.modules if m.startswith('dataflow.pipelines')),
}))
'''


def test_a_worker_preloads_the_engine_but_not_the_pipeline_classes(tmp_path):
    done = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, timeout=120, check=True,
                          env={'AIRFLOW_HOME': str(tmp_path), 'PATH': '/usr/bin:/bin'})
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {'airflow_config': True, 'before': [],
                     'engine': ['dataflow.airflow.factory', 'dataflow.airflow.tasks', 'dataflow.runs.steps', 'pglast',
                                'boto3'],
                     'pipelines': []}
