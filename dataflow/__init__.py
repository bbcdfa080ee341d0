"""data-flow: Hawk-authenticated API-to-PostgreSQL sync on Apache Airflow."""
