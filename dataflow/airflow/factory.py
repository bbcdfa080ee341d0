"""One Airflow DAG per pipeline class (DAG id = class name), built from its spec.

A dataset pipeline's DAG:

    check-if-table-exists -> create-target-table -> ingest-0 .. ingest-N -> swap -> cleanup
    fetch ------------------------------------------------------------------^

fetch starts with the run and stores pages as they arrive; the ingest tasks load them
while it goes on. cleanup runs whatever happened and fails the run if it did not swap.
A view pipeline's DAG is one task, `create-view`. A class that does not validate becomes
a DAG with one task that fails with the class's errors, so it is visible in the UI and the
other pipelines are unaffected.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset
from airflow.sdk.exceptions import AirflowFailException
from airflow.task.trigger_rule import TriggerRule
from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

from dataflow import settings
from dataflow.airflow import tasks
from dataflow.definitions.checks import Schedule
from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.definitions.discovery import Discovery
from dataflow.definitions.views import ViewPipelineSpec
from dataflow.load.catalog import DEFAULT_SCHEMA
from dataflow.runs import steps

log = logging.getLogger(__name__)

DATASET_TAGS = ['dataflow', 'dataset']
VIEW_TAGS = ['dataflow', 'view']
# fetch first, whenever it competes with other tasks for a worker slot.
FETCH_PRIORITY = 100


def default_args() -> dict[str, Any]:
    config = settings.current()
    return {
        'retries': config.task_retries,
        'retry_delay': datetime.timedelta(seconds=config.task_retry_delay_seconds),
    }


def schedule_for(spec_schedule: Schedule, data_intervals: bool = False) -> Any:
    """The DAG schedule for a class's `schedule_interval`, or None when schedules are off.

    With `data_intervals`, a cron schedule gets Airflow 2's meaning: each run covers the
    interval that starts at its logical date ('@monthly': that month), which is what view
    where-clauses written with `ds` expect. (Airflow 3's default cron timetable gives runs
    an empty interval at the trigger time.)
    """
    if not settings.current().pipeline_schedules_enabled or spec_schedule is None:
        return None
    if not data_intervals or spec_schedule in ('@once', '@continuous'):
        return spec_schedule
    if isinstance(spec_schedule, datetime.timedelta):
        return DeltaDataIntervalTimetable(spec_schedule)
    return CronDataIntervalTimetable(spec_schedule, timezone='UTC')


def asset_of(target_db: str, table: str) -> Asset:
    """The Airflow Asset of a dataset table: the swap task produces it, view pipelines read it,
    so lineage and "last updated" show in Airflow's own Assets view."""
    return Asset(name=f'{target_db}.{DEFAULT_SCHEMA}.{table}', uri=f'dataflow://{target_db}/{DEFAULT_SCHEMA}/{table}',
                 group='dataflow')


def _description(pipeline_class: type, what: str) -> str:
    """The DAG list's one line: the class docstring's first line, and what the DAG does."""
    first = (pipeline_class.__doc__ or '').strip().splitlines()
    return f'{first[0].rstrip(".")}: {what}' if first else what


def dataset_dag(spec: DatasetPipelineSpec) -> DAG:
    with DAG(
        dag_id=spec.name,
        schedule=schedule_for(spec.schedule),
        start_date=spec.start_date,
        end_date=spec.end_date,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=DATASET_TAGS,
        description=_description(spec.pipeline_class, f'{spec.source} -> {spec.target_db}: {spec.table_name}'),
        doc_md=(spec.pipeline_class.__doc__ or '') + f'\n\nLoads `{spec.source_path}` of the source connection '
                                                     f'`{spec.source_conn_id}` into `{spec.table_name}`.',
    ) as dag:
        def operator(task_id: str, step: tasks.Step, **kwargs: Any) -> PythonOperator:
            return PythonOperator(task_id=task_id, python_callable=tasks.step_callable(step, spec), **kwargs)

        check = operator('check-if-table-exists', steps.check_if_table_exists)
        fetch = operator('fetch', steps.fetch, priority_weight=FETCH_PRIORITY, weight_rule='absolute')
        create = operator('create-target-table', steps.create_target_table)
        ingest = [operator(f'ingest-{i}', steps.ingest) for i in range(settings.current().ingest_task_concurrency)]
        swap = operator('swap', steps.publish, outlets=[asset_of(spec.target_db, spec.table_name)])
        cleanup = operator('cleanup', steps.cleanup, trigger_rule=TriggerRule.ALL_DONE)

        check >> create >> ingest >> swap
        fetch >> swap
        # After every task, not just swap: a failed fetch fails swap at once, while
        # ingest tasks may still be loading from the staging table.
        [check, fetch, create, *ingest, swap] >> cleanup
    return dag


def view_dag(spec: ViewPipelineSpec) -> DAG:
    def create_view(**context: Any) -> dict[str, Any]:
        return tasks.create_view(spec, context)

    with DAG(
        dag_id=spec.name,
        schedule=schedule_for(spec.schedule, data_intervals=True),
        start_date=spec.start_date,
        end_date=spec.end_date,
        catchup=spec.catchup,
        default_args=default_args(),
        tags=VIEW_TAGS,
        description=_description(spec.pipeline_class,
                                 f'{spec.view_name}_YYYY_MM_DD views over {spec.dataset.target_db}: '
                                 f'{spec.dataset.table_name}'),
        doc_md=(spec.pipeline_class.__doc__ or '') +
        f'\n\nCreates `{spec.view_name}_YYYY_MM_DD` views over `{spec.dataset.table_name}`.',
    ) as dag:
        PythonOperator(task_id='create-view', python_callable=create_view,
                       inlets=[asset_of(spec.dataset.target_db, spec.dataset.table_name)])
    return dag


def invalid_pipeline_dag(name: str, error: Exception) -> DAG:
    """A DAG of one task that fails with a pipeline class's errors: the class shows in the
    UI with what is wrong, and breaks nothing else."""
    message = str(error)

    def fail() -> None:
        raise AirflowFailException(message)

    with DAG(dag_id=name, schedule=None, tags=['dataflow', 'invalid'], description=message[:200],
             doc_md=f'This pipeline class is not valid:\n\n```\n{message}\n```') as dag:
        PythonOperator(task_id='invalid-pipeline', python_callable=fail)
    return dag


Spec = TypeVar('Spec')


def register_dags(namespace: MutableMapping[str, Any], discovery: Discovery[Spec],
                  build: Callable[[Spec], DAG]) -> None:
    """Put a DAG for every class `discovery` found into a DAG file's `namespace` (its
    globals, where Airflow looks): `build(spec)` for valid classes, and a failing DAG
    naming the errors for the others."""
    for name, spec in discovery.specs.items():
        namespace[name] = build(spec)
    for name, error in discovery.errors.items():
        log.error('Pipeline %s is not valid: %s', name, error)
        namespace[name] = invalid_pipeline_dag(name, error)
