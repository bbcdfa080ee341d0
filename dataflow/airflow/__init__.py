"""The only package of data-flow that imports Airflow: the DAG files (dags/), the DAG
factory, the task adapter, the Variables page store and the connections it resolves."""
