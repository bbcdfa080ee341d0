"""Airflow's template macros, for where-clauses rendered outside a task (dataflow check,
the standard tests): inside a task they come with the task's context."""

from __future__ import annotations

from types import ModuleType


def airflow_macros() -> ModuleType:
    from airflow.sdk.execution_time import macros  # imported when asked for: it loads Airflow

    return macros
