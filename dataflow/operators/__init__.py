"""The code Airflow tasks run: thin wrappers around the library."""
