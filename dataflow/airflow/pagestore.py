"""Pages in Airflow Variables, through the Task SDK: the default page store of a dataset
DAG (dataflow.runs.pagestore says what is stored)."""

from __future__ import annotations

from airflow.sdk import Variable
from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

from dataflow.errors import PageMissing


class VariablePageStore:
    def keys(self, prefix: str) -> list[str]:
        return list(Variable.keys(prefix))

    def set(self, key: str, value: str) -> None:
        Variable.set(key, value)

    def get(self, key: str) -> str:
        # Read through the execution API's secrets backend, as Variable.get does, minus
        # the secrets masker: it re-escapes the whole value as a regex on every read to
        # decide whether to mask it, and page values under our keys never are (it was
        # 18% of an ingest task's CPU).
        value = ExecutionAPISecretsBackend().get_variable(key)
        if value is None:
            raise PageMissing(f'page Variable {key} is missing')
        return value

    def delete(self, key: str) -> None:
        Variable.delete(key)
