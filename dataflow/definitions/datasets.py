"""Dataset pipeline classes, as data engineers write them, checked into specs.

A class names its source (`source_url`), its target (`target_db`, `table_name`), when it
runs (`start_date`, `end_date`, `schedule_interval`) and how each source field becomes a
column (`field_mapping`), plus optional quality gates. `dataset_pipeline_spec` checks all
of it and reports every problem at once as `Class.attribute: problem`. No I/O.
"""

from __future__ import annotations

import datetime
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from dataflow.definitions import checks
from dataflow.definitions.checks import RESERVED_TABLE_PREFIX, Problems, Schedule
from dataflow.definitions.columns import Column, parse_column_type

# Quality gates, checked before a new table replaces the old one (class attributes):
#   min_rows_ratio  the new table must have at least this share of the old one's rows
#                   (None: no check);
#   all_null_columns  what a column with only NULLs does: 'warn', 'fail' or 'ignore'.
DEFAULT_MIN_ROWS_RATIO = 0.9
DEFAULT_ALL_NULL_COLUMNS = 'warn'
ALL_NULL_ACTIONS = ('warn', 'fail', 'ignore')


@dataclass(frozen=True)
class DatasetPipelineSpec:
    name: str
    table_name: str
    source_url: str
    target_db: str
    start_date: datetime.datetime
    end_date: datetime.datetime | None
    schedule: Schedule
    columns: tuple[Column, ...]
    pipeline_class: type = field(repr=False, compare=False)
    min_rows_ratio: float | None = DEFAULT_MIN_ROWS_RATIO
    all_null_columns: str = DEFAULT_ALL_NULL_COLUMNS

    @property
    def primary_key(self) -> Column | None:
        """The primary key column, or None."""
        return next((c for c in self.columns if c.type.primary_key), None)


def _field_mapping(problems: Problems, mapping: Any) -> tuple[Column, ...]:
    if not isinstance(mapping, (list, tuple)) or not mapping:
        problems.add('field_mapping', 'must be a non-empty list of (source_field, column, SQL type)')
        return ()
    columns: list[Column] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(mapping):
        where = f'field_mapping[{index}]'
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
            problems.add(where, f'must be (source_field, column, SQL type), got {entry!r}')
            continue
        source_field, column_name, sql_type = entry
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
        columns.append(Column(source_field, column_name, column_type))
    primary_keys = [c.name for c in columns if c.type.primary_key]
    if len(primary_keys) > 1:
        problems.add('field_mapping', f'more than one PRIMARY KEY column: {", ".join(primary_keys)}')
    return tuple(columns)


def dataset_pipeline_spec(cls: type) -> DatasetPipelineSpec:
    """The checked spec of a dataset pipeline class, or DefinitionError listing every
    problem found (class name and attribute in each)."""
    problems = Problems(cls)
    required = ('table_name', 'source_url', 'target_db', 'start_date', 'field_mapping')
    for attribute in required:
        if not hasattr(cls, attribute):
            problems.add(attribute, 'is missing')
    problems.raise_if_any()
    attributes: Any = cls  # the class's attributes are checked below, one by one

    table_name = attributes.table_name
    if checks.identifier(problems, 'table_name', table_name, 'table name'):
        if table_name.startswith(RESERVED_TABLE_PREFIX):
            problems.add('table_name', f'names starting with {RESERVED_TABLE_PREFIX!r} are reserved for data-flow')

    source_url = attributes.source_url
    parsed = urllib.parse.urlsplit(source_url) if isinstance(source_url, str) else None
    if parsed is None or parsed.scheme not in ('http', 'https') or not parsed.hostname:
        problems.add('source_url', f'must be an http(s) URL, got {source_url!r}')

    if not isinstance(attributes.target_db, str) or not attributes.target_db:
        problems.add('target_db', f'must be an Airflow connection id, got {attributes.target_db!r}')

    start_date, end_date = checks.dates(problems, cls)

    schedule = checks.schedule(problems, getattr(cls, 'schedule_interval', None))
    columns = _field_mapping(problems, attributes.field_mapping)
    min_rows_ratio = getattr(cls, 'min_rows_ratio', DEFAULT_MIN_ROWS_RATIO)
    if min_rows_ratio is not None and (isinstance(min_rows_ratio, bool) or not isinstance(min_rows_ratio, (int, float))
                                       or not 0 <= min_rows_ratio <= 1):
        problems.add('min_rows_ratio', f'must be a number from 0 to 1, or None; got {min_rows_ratio!r}')
    all_null_columns = getattr(cls, 'all_null_columns', DEFAULT_ALL_NULL_COLUMNS)
    if all_null_columns not in ALL_NULL_ACTIONS:
        problems.add('all_null_columns', f'must be one of {", ".join(ALL_NULL_ACTIONS)}; got {all_null_columns!r}')
    problems.raise_if_any()
    assert start_date is not None  # else a problem was raised above
    return DatasetPipelineSpec(
        min_rows_ratio=min_rows_ratio,
        all_null_columns=all_null_columns,
        name=cls.__name__,
        table_name=table_name,
        source_url=source_url,
        target_db=attributes.target_db,
        start_date=start_date,
        end_date=end_date,
        schedule=schedule,
        columns=columns,
        pipeline_class=cls,
    )
