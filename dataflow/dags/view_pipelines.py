"""One Airflow DAG per view pipeline class in dataflow/meta (DAG id = class name), of one
task, `create-view`: it renders the class's where-clause for the run's interval and
creates (or replaces) the view `<view_name>_YYYY_MM_DD` over the dataset table. A class
that does not validate becomes a DAG whose one task fails with the class's errors."""

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from dataflow.dag_factory import default_args, register_dags, schedule_for
from dataflow.operators import view_tasks
from dataflow.pipelines import discover_views


def view_dag(spec):
    def create_view(**context):
        return view_tasks.create_view(spec, context)

    with DAG(
        dag_id=spec.name,
        schedule=schedule_for(spec.schedule, data_intervals=True),
        start_date=spec.start_date,
        end_date=spec.end_date,
        catchup=spec.catchup,
        default_args=default_args(),
        tags=['dataflow', 'view'],
        doc_md=(spec.pipeline_class.__doc__ or '') +
        f'\n\nCreates `{spec.view_name}_YYYY_MM_DD` views over `{spec.dataset.table_name}`.',
    ) as dag:
        PythonOperator(task_id='create-view', python_callable=create_view)
    return dag


register_dags(globals(), discover_views(), view_dag)
