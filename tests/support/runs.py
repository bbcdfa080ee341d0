"""Runs of a pipeline in this process, through the steps Airflow runs (dataflow.runs.local)."""

from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.load.connection import connector
from dataflow.load.strategies.replace import ReplaceStrategy
from dataflow.runs import local
from dataflow.runs.pagestore import MemoryPageStore, PageStore
from dataflow.runs.steps import Ports
from dataflow.sources.http import Source


def ports(dsn: str, source: Source, pages: PageStore | None = None) -> Ports:
    """The ports of a run in this process: `dsn`, `source`, pages in memory, replace."""
    return Ports(connector(dsn), source, pages if pages is not None else MemoryPageStore(), ReplaceStrategy())


def run_locally(spec: DatasetPipelineSpec, source: Source, dsn: str, run_id: str) -> local.LocalResult:
    """Run `spec` once, as `dataflow run` does."""
    return local.run(spec, ports(dsn, source), run_id)
