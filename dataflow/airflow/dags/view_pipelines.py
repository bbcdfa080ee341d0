"""One Airflow DAG per view pipeline class in dataflow/pipelines (dataflow.airflow.factory)."""

from dataflow.airflow.factory import register_dags, view_dag
from dataflow.definitions.discovery import discover_views

register_dags(globals(), discover_views(), view_dag)
