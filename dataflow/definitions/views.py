"""View pipeline classes checked into specs, and the SQL a class supplies checked as text.

`fields` expressions and the rendered where-clause are SQL written by the pipeline's
author; they are parsed with PostgreSQL's parser (pglast) and must be exactly one
expression (a field) or one condition (the where-clause), so nothing can be smuggled
after them. Aliases and names become quoted identifiers. No I/O.
"""

from __future__ import annotations

import datetime
import inspect
from dataclasses import dataclass, field
from typing import Any

import jinja2
import pglast

from dataflow.definitions import checks
from dataflow.definitions.checks import MAX_IDENTIFIER_BYTES, Problems, Schedule
from dataflow.definitions.datasets import DatasetPipelineSpec, dataset_pipeline_spec
from dataflow.errors import DefinitionError

# A view's name is `view_name` + '_YYYY_MM_DD' (+ '_HHMM' for intervals that start within a day).
VIEW_NAME_SUFFIX_BYTES = len('_YYYY_MM_DD_HHMM')

REQUIRED = ('view_name', 'dataset_pipeline', 'fields', 'start_date')
OPTIONAL: dict[str, Any] = {
    'end_date': None,
    'catchup': False,                 # a run for every interval since start_date
    'schedule_interval': None,        # cron, preset, timedelta; None: only when triggered
    'where_clause': None,             # a jinja template of one SQL condition
    'params': {},                     # names the where-clause may use, as {{ params.name }}
}

# Where-clauses are jinja templates; an undefined name is an error, never ''.
TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class ViewField:
    expression: str     # SQL over the dataset table's columns, e.g. 'subtotal::numeric/100'
    alias: str | None   # the view's column name; None keeps the dataset column's name
    # True: `expression` is a dataset column's name, to quote as an identifier, never
    # to splice in as SQL (fields = True).
    is_column: bool = False


@dataclass(frozen=True)
class ViewPipelineSpec:
    name: str
    view_name: str
    dataset: DatasetPipelineSpec
    fields: tuple[ViewField, ...]
    where_clause: str | None
    params: dict[str, Any]
    start_date: datetime.datetime
    end_date: datetime.datetime | None
    catchup: bool
    schedule: Schedule
    pipeline_class: type = field(repr=False, compare=False)


def _parse_select(statement: str, what: str) -> Any:
    try:
        statements = pglast.parse_sql(statement)
    except pglast.parser.ParseError as exc:
        raise ValueError(f'PostgreSQL cannot parse {what}: {exc}') from None
    if len(statements) != 1:
        raise ValueError(f'{what} holds more than one SQL statement')
    return statements[0].stmt


def check_expression(expression: object) -> None:
    """One SQL expression (a view column), or ValueError."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValueError(f'expression must be a non-empty string, got {expression!r}')
    select = _parse_select(f'SELECT {expression} FROM t', f'expression {expression!r}')
    if len(select.targetList or ()) != 1 or len(select.fromClause or ()) != 1 or select.whereClause is not None:
        raise ValueError(f'{expression!r} is not a single SQL expression')


def check_where(rendered: str) -> None:
    """One SQL condition (a rendered where-clause), or ValueError."""
    select = _parse_select(f'SELECT 1 FROM t WHERE {rendered}', 'the rendered where_clause')
    if len(select.fromClause or ()) != 1 or select.groupClause or select.havingClause or select.sortClause \
            or select.limitCount is not None:
        raise ValueError('the rendered where_clause is not a single condition')


def check_where_template(template: object) -> None:
    if not isinstance(template, str):
        raise ValueError(f'must be a jinja template string, got {template!r}')
    try:
        TEMPLATES.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f'jinja cannot parse it: {exc.message} (line {exc.lineno})') from None


def _fields(problems: Problems, value: Any, dataset: DatasetPipelineSpec | None) -> tuple[ViewField, ...]:
    if value is True:
        return () if dataset is None else tuple(ViewField(c.name, None, is_column=True) for c in dataset.columns)
    if not isinstance(value, (list, tuple)) or not value:
        problems.add('fields', 'must be True (every column) or a non-empty list of (SQL expression, alias)')
        return ()
    fields: list[ViewField] = []
    aliases: dict[str, int] = {}
    for index, entry in enumerate(value):
        where = f'fields[{index}]'
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            problems.add(where, f'must be (SQL expression, alias), got {entry!r}')
            continue
        expression, alias = entry
        try:
            check_expression(expression)
        except ValueError as exc:
            problems.add(where, str(exc))
            continue
        if not checks.new_name(problems, where, alias, 'alias', aliases, 'fields'):
            continue
        aliases[alias] = index
        fields.append(ViewField(expression, alias))
    return tuple(fields)


def view_pipeline_spec(cls: type) -> ViewPipelineSpec:
    """The checked spec of a view pipeline class, or DefinitionError listing every problem."""
    problems = checks.class_problems(cls, REQUIRED, OPTIONAL)
    attributes: Any = cls  # the class's attributes are checked below, one by one

    view_name = attributes.view_name
    if checks.identifier(problems, 'view_name', view_name, 'view name'):
        longest = MAX_IDENTIFIER_BYTES - VIEW_NAME_SUFFIX_BYTES
        if len(view_name.encode('utf-8')) > longest:
            problems.add('view_name', f'{view_name!r} is over {longest} bytes, leaving no room for the '
                                      'interval suffix within PostgreSQL\'s 63')

    dataset = None
    if not inspect.isclass(attributes.dataset_pipeline):
        problems.add('dataset_pipeline', f'must be a dataset pipeline class, got {attributes.dataset_pipeline!r}')
    else:
        try:
            dataset = dataset_pipeline_spec(attributes.dataset_pipeline)
        except DefinitionError as exc:
            problems.add('dataset_pipeline', f'{attributes.dataset_pipeline.__name__} is not valid: {exc}')

    fields = _fields(problems, attributes.fields, dataset)

    where_clause = getattr(cls, 'where_clause', None)
    if where_clause is not None:
        try:
            check_where_template(where_clause)
        except ValueError as exc:
            problems.add('where_clause', str(exc))

    params = getattr(cls, 'params', None) or {}
    if not isinstance(params, dict):
        problems.add('params', f'must be a dict, got {params!r}')

    start_date, end_date = checks.dates(problems, cls)
    catchup = getattr(cls, 'catchup', False)
    if not isinstance(catchup, bool):
        problems.add('catchup', f'must be True or False, got {catchup!r}')
    schedule = checks.schedule(problems, getattr(cls, 'schedule_interval', None))
    problems.raise_if_any()
    assert dataset is not None and start_date is not None  # else a problem was raised above
    return ViewPipelineSpec(
        name=cls.__name__, view_name=view_name, dataset=dataset, fields=fields, where_clause=where_clause,
        params=params, start_date=start_date, end_date=end_date, catchup=catchup, schedule=schedule,
        pipeline_class=cls,
    )
