"""Airflow's plugins folder (AIRFLOW__CORE__PLUGINS_FOLDER) of every api-server data-flow
starts: the Datasets pages (dataflow.airflow.ui)."""

from dataflow.airflow.ui.plugin import DataflowPlugin

__all__ = ['DataflowPlugin']
