"""Dataset pipeline classes, as data engineers write them, checked into specs.

A class names its source (an Airflow connection, `source_conn_id`, and a path under its
base URL, `source_path`), its target (`target_db`, `table_name`), when it runs
(`start_date`, `end_date`, `schedule_interval`) and how each source field becomes a
column (`field_mapping`), plus optional quality gates and allowances. `REQUIRED` and
`OPTIONAL` below are every attribute a class may have; anything else is refused by name,
with the nearest known attribute. `dataset_pipeline_spec` checks all of it and reports
every problem at once as `Class.attribute: problem`. No I/O.
"""

from __future__ import annotations

import datetime
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from dataflow.definitions import checks
from dataflow.definitions.checks import RESERVED_TABLE_PREFIX, Problems, Schedule
from dataflow.definitions.columns import parse_column_type
from dataflow.definitions.conversions import Conversion, Split
from dataflow.definitions.fields import Column

# The source connection a class uses unless it names one: HAWK_ID, HAWK_KEY and
# DATAHUB_BASE_URL make it when Airflow has no connection of this id.
DEFAULT_SOURCE_CONN_ID = 'datahub'

REQUIRED = ('table_name', 'source_path', 'start_date', 'field_mapping')
OPTIONAL: dict[str, Any] = {
    'source_conn_id': DEFAULT_SOURCE_CONN_ID,   # the Airflow connection of the source
    'target_db': 'datasets_db',                 # the Airflow connection of the datasets database
    'end_date': None,
    'schedule_interval': None,                  # cron, preset, timedelta; None: only when triggered
    # Quality gates, checked before a new table replaces the old one:
    'min_rows_ratio': 0.9,       # the new table has at least this share of the old one's rows (None: no check)
    'all_null_columns': 'warn',  # what a column NULL in every row does: 'warn', 'fail' or 'ignore'
    # Schema drift: a mapped source field missing from every record of a page fails the run,
    # unless it is allowed here (a list of source fields, or True for all); it then loads as NULL.
    'allow_missing_fields': (),
}
ALL_NULL_ACTIONS = ('warn', 'fail', 'ignore')


@dataclass(frozen=True)
class DatasetPipelineSpec:
    name: str
    table_name: str
    source_conn_id: str
    source_path: str
    target_db: str
    start_date: datetime.datetime
    end_date: datetime.datetime | None
    schedule: Schedule
    columns: tuple[Column, ...]
    pipeline_class: type = field(repr=False, compare=False)
    min_rows_ratio: float | None = OPTIONAL['min_rows_ratio']
    all_null_columns: str = OPTIONAL['all_null_columns']
    allow_missing_fields: frozenset[str] = frozenset()

    @property
    def primary_key(self) -> Column | None:
        """The primary key column, or None."""
        return next((c for c in self.columns if c.type.primary_key), None)

    @property
    def source(self) -> str:
        """The source as people read it: 'connection: path'."""
        return f'{self.source_conn_id}: {self.source_path}'


def _field_mapping(problems: Problems, mapping: Any) -> tuple[Column, ...]:
    if not isinstance(mapping, (list, tuple)) or not mapping:
        problems.add('field_mapping', 'must be a non-empty list of (source_field, column, SQL type)')
        return ()
    columns: list[Column] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(mapping):
        where = f'field_mapping[{index}]'
        if not (isinstance(entry, (list, tuple)) and len(entry) in (3, 4)):
            problems.add(where, f'must be (source_field, column, SQL type) or (..., conversion), got {entry!r}')
            continue
        source_field, column_name, sql_type = entry[:3]
        conversion: Conversion | None = entry[3] if len(entry) == 4 else None
        if not isinstance(source_field, str) or not source_field:
            problems.add(where, f'source field must be a non-empty string, got {source_field!r}')
            continue
        if not checks.new_name(problems, where, column_name, 'column', seen, 'field_mapping'):
            continue
        seen[column_name] = index
        try:
            column_type = parse_column_type(sql_type)
        except ValueError as exc:
            problems.add(where, f'column {column_name!r}: {exc}')
            continue
        if conversion is not None:
            problem = conversion.problem_with(column_type) if isinstance(conversion, Split) else (
                f'{conversion!r} is not a conversion data-flow knows (dataflow.definitions.conversions.split)')
            if problem:
                problems.add(where, f'column {column_name!r}: {problem}')
                continue
        columns.append(Column(source_field, column_name, column_type, conversion))
    primary_keys = [c.name for c in columns if c.type.primary_key]
    if len(primary_keys) > 1:
        problems.add('field_mapping', f'more than one PRIMARY KEY column: {", ".join(primary_keys)}')
    return tuple(columns)


def _source_path(problems: Problems, value: Any) -> str:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or not value.startswith('/') or parts.scheme or parts.netloc:
        problems.add('source_path', f'must be a path under the source connection\'s base URL, starting with /, '
                                    f'e.g. \'/v4/dataset/omis-dataset\'; got {value!r}')
    return value  # type: ignore[no-any-return]


def _allowed_missing(problems: Problems, value: Any, columns: tuple[Column, ...]) -> frozenset[str]:
    mapped = {c.source_field for c in columns}
    if value is True:
        return frozenset(mapped)
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        problems.add('allow_missing_fields', f'must be a list of source fields, or True for every one; got {value!r}')
        return frozenset()
    for name in sorted(set(value) - mapped):
        problems.add('allow_missing_fields', f'{name!r} is not a source field of field_mapping')
    return frozenset(value) & mapped


def dataset_pipeline_spec(cls: type) -> DatasetPipelineSpec:
    """The checked spec of a dataset pipeline class, or DefinitionError listing every
    problem found (class name and attribute in each)."""
    problems = checks.class_problems(cls, REQUIRED, OPTIONAL)
    value = {name: getattr(cls, name, default) for name, default in {**dict.fromkeys(REQUIRED), **OPTIONAL}.items()}

    table_name = value['table_name']
    if checks.identifier(problems, 'table_name', table_name, 'table name'):
        if table_name.startswith(RESERVED_TABLE_PREFIX):
            problems.add('table_name', f'names starting with {RESERVED_TABLE_PREFIX!r} are reserved for data-flow')
    source_path = _source_path(problems, value['source_path'])
    for attribute in ('source_conn_id', 'target_db'):
        if not isinstance(value[attribute], str) or not value[attribute]:
            problems.add(attribute, f'must be an Airflow connection id, got {value[attribute]!r}')

    start_date, end_date = checks.dates(problems, cls)
    schedule = checks.schedule(problems, value['schedule_interval'])
    columns = _field_mapping(problems, value['field_mapping'])
    min_rows_ratio = value['min_rows_ratio']
    if min_rows_ratio is not None and (isinstance(min_rows_ratio, bool) or not isinstance(min_rows_ratio, (int, float))
                                       or not 0 <= min_rows_ratio <= 1):
        problems.add('min_rows_ratio', f'must be a number from 0 to 1, or None; got {min_rows_ratio!r}')
    if value['all_null_columns'] not in ALL_NULL_ACTIONS:
        problems.add('all_null_columns',
                     f'must be one of {", ".join(ALL_NULL_ACTIONS)}; got {value["all_null_columns"]!r}')
    allow_missing_fields = _allowed_missing(problems, value['allow_missing_fields'], columns)
    problems.raise_if_any()
    assert start_date is not None  # else a problem was raised above
    return DatasetPipelineSpec(
        name=cls.__name__,
        table_name=table_name,
        source_conn_id=value['source_conn_id'],
        source_path=source_path,
        target_db=value['target_db'],
        start_date=start_date,
        end_date=end_date,
        schedule=schedule,
        columns=columns,
        pipeline_class=cls,
        min_rows_ratio=min_rows_ratio,
        all_null_columns=value['all_null_columns'],
        allow_missing_fields=allow_missing_fields,
    )
