"""What a data engineer writes, and its validation: pipeline classes become checked,
immutable specs (datasets, views), found by discovery. Nothing here does I/O or imports
Airflow."""
