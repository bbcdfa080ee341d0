"""Not shipped with data-flow: what local runs, the demo, the tests and the benchmark
stand on. A Data Hub-like demo source, generated records, a local Airflow stack, embedded
servers, and the demo itself (`python -m devstack`, which bin/demo runs)."""
