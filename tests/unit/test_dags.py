import datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException

from dataflow.airflow import factory
from dataflow.airflow.dags import dataset_pipelines
from dataflow.airflow.factory import invalid_pipeline_dag
from dataflow.definitions.discovery import discover
from dataflow.errors import DefinitionError
from tests.support.settings import use_settings

TASKS = ['check-if-table-exists', 'fetch', 'create-target-table', 'ingest-0', 'ingest-1', 'ingest-2', 'ingest-3',
         'swap', 'cleanup']


@pytest.fixture(params=sorted(discover().specs))
def dag(request):
    return getattr(dataset_pipelines, request.param)


def test_every_pipeline_class_is_a_dag_of_the_documented_shape(dag):
    spec = discover().specs[dag.dag_id]
    assert sorted(t.task_id for t in dag.tasks) == sorted(TASKS)
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert upstream['check-if-table-exists'] == set() and upstream['fetch'] == set()
    assert upstream['create-target-table'] == {'check-if-table-exists'}
    assert all(upstream[f'ingest-{i}'] == {'create-target-table'} for i in range(4))
    assert upstream['swap'] == {'fetch', 'ingest-0', 'ingest-1', 'ingest-2', 'ingest-3'}
    assert upstream['cleanup'] == set(TASKS) - {'cleanup'}
    assert dag.get_task('cleanup').trigger_rule == 'all_done'
    assert dag.get_task('fetch').priority_weight > max(dag.get_task(t).priority_weight for t in TASKS if t != 'fetch')
    assert (dag.catchup, dag.max_active_runs) == (False, 1)
    assert dag.start_date == spec.start_date and dag.end_date == spec.end_date


def test_an_invalid_class_becomes_a_dag_that_fails_with_its_errors():
    error = DefinitionError('BrokenDatasetPipeline', [('field_mapping[0]', "unknown column type 'integr'")])
    dag = invalid_pipeline_dag('BrokenDatasetPipeline', error)
    assert dag.dag_id == 'BrokenDatasetPipeline' and dag.schedule is None and 'invalid' in dag.tags
    [task] = dag.tasks
    with pytest.raises(AirflowFailException, match=r"BrokenDatasetPipeline.field_mapping\[0\]: unknown column type"):
        task.python_callable()


def test_schedules_follow_the_class_unless_switched_off(monkeypatch):
    spec = discover().specs['OMISDatasetPipeline']
    assert factory.dataset_dag(spec).schedule == '@daily'
    use_settings(monkeypatch, pipeline_schedules_enabled=False)
    assert factory.dataset_dag(spec).schedule is None
    assert spec.start_date == datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)
