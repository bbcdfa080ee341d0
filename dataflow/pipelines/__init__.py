"""The pipeline classes data-flow runs.

Any class in a module of this package whose name contains `DatasetPipeline` (or
`ViewPipeline`) is a pipeline: it becomes an Airflow DAG and gets the standard tests.
A team's own classes go in a module of their own here (e.g. `dataflow/pipelines/trade.py`);
dataflow.definitions says what each class must define.
"""
