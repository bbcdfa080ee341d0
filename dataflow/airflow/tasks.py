"""The task adapter: each task of a pipeline DAG runs one step of dataflow.runs.steps (or
creates a view) with the ports of a deployment, and turns the outcome into Airflow's.

    Idle                              -> the task is rescheduled (its worker slot freed)
    Fatal, ConfigurationError,
    DefinitionError                   -> the task fails at once, without retrying
    Retriable, any other exception    -> the task fails, and Airflow retries it (TASK_RETRIES)

Every failure's message names the pipeline.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException

from dataflow import settings
from dataflow.airflow.connections import connector_for, source_connection
from dataflow.airflow.pagestore import page_store_for
from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.definitions.templates import logical_date_of, render_where_clause, template_context, view_name_for
from dataflow.definitions.views import ViewPipelineSpec
from dataflow.errors import ConfigurationError, DataflowError, DefinitionError, Fatal, naming_pipeline
from dataflow.load.strategies.replace import ReplaceStrategy
from dataflow.load.views import create_view as create_view_in
from dataflow.runs import pagestore
from dataflow.runs.steps import Idle, Ports, RunContext, Summary
from dataflow.sources.connection import source_for
from dataflow.sources.http import Page, Source

log = logging.getLogger(__name__)

RESCHEDULE_AFTER = datetime.timedelta(seconds=5)
Step = Callable[[DatasetPipelineSpec, RunContext, Ports], Summary]


class PipelineTaskError(DataflowError):
    """A task failed and Airflow will retry it; the message names the pipeline, and the page,
    record and field where they apply."""


def run_context(context: dict[str, Any]) -> RunContext:
    """Who is running, from Airflow's task context."""
    dag_run, ti = context['dag_run'], context['ti']
    return RunContext(
        run_key=pagestore.run_key(dag_run.dag_id, dag_run.run_id, getattr(dag_run, 'clear_number', 0)),
        try_number=ti.try_number,
        max_tries=context['task'].retries + 1,
        task_label=f'{ti.task_id}@{socket.gethostname()}:{os.getpid()}',
    )


class _SourceWhenUsed:
    """The source, built when first used: only fetch needs it, and its credentials."""

    def __init__(self, build: Callable[[], Source]) -> None:
        self._build = build
        self._source: Source | None = None

    def _built(self) -> Source:
        if self._source is None:
            self._source = self._build()
        return self._source

    def url_for(self, path: str) -> str:
        return self._built().url_for(path)

    def pages(self, url: str) -> Iterator[Page]:
        return self._built().pages(url)


def ports_for(spec: DatasetPipelineSpec) -> Ports:
    """The ports of a deployment: the `target_db` connection, the `source_conn_id` source
    (its connection read when first used), the page store PAGE_STORE selects (Variables by
    default), and the replace strategy."""
    return Ports(
        connect=connector_for(spec.target_db),
        source=_SourceWhenUsed(lambda: source_for(source_connection(spec.source_conn_id), settings.current())),
        pages=page_store_for(settings.current()),
        strategy=ReplaceStrategy(),
    )


def _outcome(name: str, work: Callable[[], Summary]) -> Summary:
    try:
        return work()
    except Idle:
        raise AirflowRescheduleException(datetime.datetime.now(datetime.timezone.utc) + RESCHEDULE_AFTER) from None
    except (Fatal, ConfigurationError, DefinitionError) as exc:
        raise AirflowFailException(naming_pipeline(name, exc)) from None
    except DataflowError as exc:
        raise PipelineTaskError(naming_pipeline(name, exc)) from exc


def step_callable(step: Step, spec: DatasetPipelineSpec) -> Callable[..., Summary]:
    """`step` as a PythonOperator callable."""

    def run_task(**context: Any) -> Summary:
        return _outcome(spec.name, lambda: step(spec, run_context(context), ports_for(spec)))

    run_task.__name__ = step.__name__
    return run_task


def create_view(spec: ViewPipelineSpec, context: dict[str, Any]) -> Summary:
    """The task of a view pipeline run: create (or replace) the view of the run's interval."""

    def work() -> Summary:
        logical_date = logical_date_of(context.get('logical_date'))
        where = render_where_clause(spec, template_context(
            logical_date, context.get('macros'), context.get('data_interval_start'), context.get('data_interval_end'),
            params=spec.params,
        ))
        name = view_name_for(spec, logical_date)
        conn = connector_for(spec.dataset.target_db)()
        try:
            rows = create_view_in(conn, spec, name, where)
        finally:
            conn.close()
        log.info('%s: view %s over %s has %d rows; where %s', spec.name, name, spec.dataset.table_name, rows, where)
        return {'view': name, 'rows': rows, 'where': where}

    return _outcome(spec.name, work)
