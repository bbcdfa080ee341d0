-- The two databases data-flow uses: Airflow's metadata and the datasets it loads.
-- Run by the PostgreSQL container at first start (docker-compose.yml), or by hand for a
-- local run: psql -h 127.0.0.1 -U postgres -f init.sql
CREATE DATABASE airflow;
CREATE DATABASE datasets;
