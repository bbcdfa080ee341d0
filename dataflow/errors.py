"""Every exception data-flow raises on purpose, in one tree:

    DataflowError
        ConfigurationError     a setting (environment, connection) data-flow cannot use
        DefinitionError        a pipeline class is not valid
        SyncError              a run failed
            Retriable          another try may succeed (the source, the database, a lock)
            Fatal              another try cannot help (bad data, a failed gate, another
                               task's failure): the run fails at once

Whether a failed task is retried is carried by its exception's class, and nothing else.
Each message names what was wrong: the pipeline, and where it applies the page (URL),
the record and the field.
"""

from __future__ import annotations

from collections.abc import Iterable


class DataflowError(Exception):
    """Base class of every error data-flow raises on purpose."""


class ConfigurationError(DataflowError, ValueError):
    """A setting (an environment variable, a connection) has a value data-flow cannot use."""


class DefinitionError(DataflowError):
    """A pipeline class is not valid. Lists each problem as Class.attribute: problem."""

    def __init__(self, pipeline: str, problems: Iterable[tuple[str, str]]) -> None:
        self.pipeline = pipeline
        self.problems = list(problems)  # [(attribute, problem), ...]
        super().__init__('; '.join(f'{pipeline}.{attribute}: {problem}' for attribute, problem in self.problems))


class SyncError(DataflowError):
    """A run failed. Raise one of its two kinds, never this class itself."""


class Retriable(SyncError):
    """A run failed in a way another try may mend."""


class Fatal(SyncError):
    """A run failed in a way no retry can mend: it fails at once."""


class SourceError(Retriable):
    """The source could not be read, or answered something data-flow will not trust."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f'page {url}: {problem}')


class RecordError(Fatal):
    """A record could not be loaded. Names the page, the record and the field.
    `sqlstate` is PostgreSQL's error code when the database refused the value."""

    def __init__(self, page: str, record_key: str, field: str | None, problem: str,
                 sqlstate: str | None = None) -> None:
        self.page = page
        self.record_key = record_key
        self.field = field
        self.problem = problem
        self.sqlstate = sqlstate
        where = f'page {page}: record {record_key}'
        if field is not None:
            where += f': field {field}'
        super().__init__(f'{where}: {problem}')


class SwapError(Retriable):
    """The staging table could not be swapped in; the target is unchanged. `sqlstate` is
    PostgreSQL's error code when the database refused a statement of the swap."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class QualityGateFailed(Fatal):
    """The new table failed a quality gate; the target is unchanged."""


class SchemaDrift(Fatal):
    """The source no longer sends a mapped field; nothing was swapped."""


class FetchFailed(Fatal):
    """Fetch failed for good; the ingest tasks stop."""


class FetchSuperseded(Fatal):
    """A later try of fetch has taken the run over (this one was given up for lost): this
    one stops, having written nothing more."""


class RunNotSwapped(Fatal):
    """The run ended without swapping its table in; the target is unchanged."""


class RunFailed(Fatal):
    """A run in one process (dataflow run) failed; names the pipeline. Its `cause` is the
    step's error. The target is as it was before the run."""

    def __init__(self, pipeline: str, cause: BaseException) -> None:
        self.pipeline = pipeline
        self.cause = cause
        super().__init__(naming_pipeline(pipeline, cause))


class PageMissing(Retriable):
    """A stored page could not be read back (missing, or not stored by data-flow)."""


class ViewError(Retriable):
    """A view could not be rendered or created."""


def naming_pipeline(pipeline: str, error: BaseException) -> str:
    """The error's message, led by the pipeline's name (once)."""
    message = str(error)
    return message if message.startswith(f'{pipeline}:') else f'{pipeline}: {message}'
