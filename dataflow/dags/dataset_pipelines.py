"""One Airflow DAG per dataset pipeline class in dataflow/meta (DAG id = class name).

    check-if-table-exists -> create-target-table -> ingest-0 .. ingest-N -> swap -> cleanup
    fetch ------------------------------------------------------------------^

fetch starts with the run and stores pages as they arrive; the ingest tasks load them
while it goes on. cleanup runs whatever happened and fails the run if it did not swap.
A pipeline class that does not validate becomes a DAG with one task that fails with the
class's errors, so it is visible in the UI and the other pipelines are unaffected.
"""

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from airflow.task.trigger_rule import TriggerRule

from dataflow import constants
from dataflow.dag_factory import default_args, register_dags, schedule_for
from dataflow.operators import dataset_tasks as tasks
from dataflow.pipelines import discover

TAGS = ['dataflow', 'dataset']
# fetch first, whenever it competes with other tasks for a worker slot.
FETCH_PRIORITY = 100


def dataset_dag(spec):
    with DAG(
        dag_id=spec.name,
        schedule=schedule_for(spec.schedule),
        start_date=spec.start_date,
        end_date=spec.end_date,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=TAGS,
        doc_md=(spec.pipeline_class.__doc__ or '') + f'\n\nLoads `{spec.source_url}` into `{spec.table_name}`.',
    ) as dag:
        def operator(task_id, function, **kwargs):
            return PythonOperator(task_id=task_id, python_callable=tasks.airflow_callable(function, spec), **kwargs)

        check = operator('check-if-table-exists', tasks.check_if_table_exists)
        fetch = operator('fetch', tasks.fetch, priority_weight=FETCH_PRIORITY, weight_rule='absolute')
        create = operator('create-target-table', tasks.create_target_table)
        ingest = [operator(f'ingest-{i}', tasks.ingest) for i in range(constants.INGEST_TASK_CONCURRENCY)]
        swap = operator('swap', tasks.swap)
        cleanup = operator('cleanup', tasks.cleanup, trigger_rule=TriggerRule.ALL_DONE)

        check >> create >> ingest >> swap
        fetch >> swap
        # After every task, not just swap: a failed fetch fails swap at once, while
        # ingest tasks may still be loading from the staging table.
        [check, fetch, create, *ingest, swap] >> cleanup
    return dag


register_dags(globals(), discover(), dataset_dag)
