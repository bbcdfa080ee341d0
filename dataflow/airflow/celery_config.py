"""The Celery configuration of data-flow's Airflow (`[celery] celery_config_options`, set
by dataflow.deploy.environment.LATENCY_SETTINGS): Airflow's own, unchanged, plus data-flow's
engine loaded once in each Celery worker, before it forks its pool.

Every task runs in a process forked from a pool process, and runs its DAG file first.
Without this, each of them imports data-flow's engine to do so (the task SDK, the Postgres
and amazon providers, boto3 through Airflow's asset URI handlers, pglast, psycopg2), which
costs more than most tasks' work; forked from a worker that has imported it, a task starts
with it. Airflow preloads its own operators the same way (the `import_modules` signal).

Pipeline classes are not preloaded: each task imports its pipelines package as its DAG file
runs, so a changed or added class is what the next task runs, without restarting workers.
Engine code (the `dataflow` package outside `dataflow.pipelines`) is loaded when a worker
starts: a deploy restarts the workers.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


@import_modules.connect
def load_engine(*args: Any, **kwargs: Any) -> None:
    """Import what every data-flow task needs before it runs (Celery calls this in the worker
    process, before the pool processes fork from it)."""
    from dataflow.airflow import factory

    # Building an Asset loads Airflow's URI handlers of every installed provider; a task
    # whose DAG declares one (swap's outlet, views' inlets) would load them on its own.
    factory.asset_of('preload', 'preload')
