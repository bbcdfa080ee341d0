"""One Airflow DAG per dataset pipeline class in dataflow/pipelines (dataflow.airflow.factory)."""

from dataflow.airflow.factory import dataset_dag, register_dags
from dataflow.definitions.discovery import discover

register_dags(globals(), discover(), dataset_dag)
