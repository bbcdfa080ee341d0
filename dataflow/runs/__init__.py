"""Running a pipeline, with no Airflow import: the ledger (dataflow.runs.ledger), the page
store seam and codec (pagestore), the steps over explicit ports (steps), and the same
steps in one process (local)."""
