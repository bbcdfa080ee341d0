"""What the DAG files in dataflow/dags share."""

import datetime
import logging

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from dataflow import constants

log = logging.getLogger(__name__)


def default_args():
    return {
        'retries': constants.TASK_RETRIES,
        'retry_delay': datetime.timedelta(seconds=constants.TASK_RETRY_DELAY_SECONDS),
    }


def schedule_for(spec_schedule, data_intervals=False):
    """The DAG schedule for a class's `schedule_interval`, or None when schedules are off.

    With `data_intervals`, a cron schedule gets Airflow 2's meaning: each run covers the
    interval that starts at its logical date ('@monthly': that month), which is what view
    where-clauses written with `ds` expect. (Airflow 3's default cron timetable gives runs
    an empty interval at the trigger time.)
    """
    if not constants.PIPELINE_SCHEDULES_ENABLED or spec_schedule is None:
        return None
    if not data_intervals or spec_schedule in ('@once', '@continuous'):
        return spec_schedule
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    if isinstance(spec_schedule, datetime.timedelta):
        return DeltaDataIntervalTimetable(spec_schedule)
    return CronDataIntervalTimetable(spec_schedule, timezone='UTC')


def invalid_pipeline_dag(name, error):
    """A DAG of one task that fails with a pipeline class's errors: the class shows in the
    UI with what is wrong, and breaks nothing else."""
    message = str(error)

    def fail():
        raise AirflowFailException(message)

    with DAG(dag_id=name, schedule=None, tags=['dataflow', 'invalid'], description=message[:200],
             doc_md=f'This pipeline class is not valid:\n\n```\n{message}\n```') as dag:
        PythonOperator(task_id='invalid-pipeline', python_callable=fail)
    return dag


def register_dags(namespace, discovery, build):
    """Put a DAG for every class `discovery` found into a DAG file's `namespace` (its
    globals, where Airflow looks): `build(spec)` for valid classes, and a failing DAG
    naming the errors for the others."""
    for name, spec in discovery.specs.items():
        namespace[name] = build(spec)
    for name, error in discovery.errors.items():
        log.error('Pipeline %s is not valid: %s', name, error)
        namespace[name] = invalid_pipeline_dag(name, error)
