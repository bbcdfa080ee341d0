"""The Datasets pages of the Airflow UI (an Airflow plugin): what each pipeline loaded, how
fresh it is, its history and its views. Read-only: every route is a GET, and every read of
the datasets database runs in a read-only transaction with a statement timeout."""

# Where the plugin mounts the pages in the api-server.
PREFIX = '/dataflow'
