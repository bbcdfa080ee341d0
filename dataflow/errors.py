"""Exceptions data-flow raises. Each message names what was wrong: the pipeline, and
where it applies the page (URL), the record and the field."""


class DataflowError(Exception):
    """Base class of every error data-flow raises on purpose."""


class PipelineDefinitionError(DataflowError):
    """A pipeline class is not valid. Lists each problem as Class.attribute: problem."""

    def __init__(self, pipeline, problems):
        self.pipeline = pipeline
        self.problems = list(problems)  # [(attribute, problem), ...]
        super().__init__('; '.join(f'{pipeline}.{attribute}: {problem}' for attribute, problem in self.problems))


class SourceError(DataflowError):
    """The source API could not be read, or answered something data-flow will not trust."""

    def __init__(self, url, problem):
        self.url = url
        self.problem = problem
        super().__init__(f'page {url}: {problem}')


class RecordError(DataflowError):
    """A record could not be loaded. Names the page, the record and the field.
    `sqlstate` is PostgreSQL's error code when the database refused the value."""

    def __init__(self, page, record_key, field, problem, sqlstate=None):
        self.page = page
        self.record_key = record_key
        self.field = field
        self.problem = problem
        self.sqlstate = sqlstate
        where = f'page {page}: record {record_key}'
        if field is not None:
            where += f': field {field}'
        super().__init__(f'{where}: {problem}')


class SwapError(DataflowError):
    """The staging table could not be swapped in; the target is unchanged. `sqlstate` is
    PostgreSQL's error code when the database refused a statement of the swap."""

    def __init__(self, message, sqlstate=None):
        super().__init__(message)
        self.sqlstate = sqlstate


def naming_pipeline(pipeline, error):
    """The error's message, led by the pipeline's name (once)."""
    message = str(error)
    return message if message.startswith(f'{pipeline}:') else f'{pipeline}: {message}'
