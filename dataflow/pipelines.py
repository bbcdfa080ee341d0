"""Pipeline classes as data engineers write them, turned into checked specifications.

Any class in a module of `dataflow.meta` whose name contains `DatasetPipeline` is a
dataset pipeline. Each is validated on its own: a broken class is reported with its
name and attribute and leaves every other pipeline working.
"""

import datetime
import importlib
import inspect
import pkgutil
import urllib.parse
from dataclasses import dataclass, field

from dataflow.column_types import ColumnType, parse_column_type
from dataflow.errors import PipelineDefinitionError

DATASET_PIPELINE_MARKER = 'DatasetPipeline'
PIPELINES_PACKAGE = 'dataflow.meta'

# PostgreSQL truncates longer identifiers silently; two columns could then collide.
MAX_IDENTIFIER_BYTES = 63

# Tables whose names start with this belong to data-flow (staging and replaced tables).
RESERVED_TABLE_PREFIX = '_df_'


@dataclass(frozen=True)
class Column:
    source_field: str   # key in the source record; see `source_path`
    name: str           # column in the target table
    type: ColumnType

    @property
    def source_path(self):
        """The nested path tried when the record has no literal `source_field` key:
        'company__name' reads record['company']['name']."""
        return tuple(self.source_field.split('__'))


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
    schedule: object
    columns: tuple
    pipeline_class: type = field(repr=False, compare=False)
    min_rows_ratio: float | None = DEFAULT_MIN_ROWS_RATIO
    all_null_columns: str = DEFAULT_ALL_NULL_COLUMNS

    @property
    def primary_key(self):
        """The primary key column, or None."""
        return next((c for c in self.columns if c.type.primary_key), None)


class _Problems:
    """Collects every problem of one class, so its author sees them all at once."""

    def __init__(self, cls):
        self.cls = cls
        self.found = []

    def add(self, attribute, problem):
        self.found.append((attribute, problem))

    def raise_if_any(self):
        if self.found:
            raise PipelineDefinitionError(self.cls.__name__, self.found)


def _check_identifier(problems, attribute, value, what):
    if not isinstance(value, str) or not value:
        problems.add(attribute, f'{what} must be a non-empty string, got {value!r}')
        return False
    if len(value.encode('utf-8')) > MAX_IDENTIFIER_BYTES:
        problems.add(
            attribute,
            f'{what} {value!r} is {len(value.encode("utf-8"))} bytes; '
            f'PostgreSQL identifiers are at most {MAX_IDENTIFIER_BYTES}',
        )
        return False
    if '\x00' in value:
        problems.add(attribute, f'{what} {value!r} contains a NUL character')
        return False
    return True


def _check_new_name(problems, where, name, what, seen, listing):
    """A valid identifier not used before in this list: `seen` maps names to indexes."""
    if not _check_identifier(problems, where, name, what):
        return False
    if name in seen:
        problems.add(where, f'duplicate {what} {name!r} (also {listing}[{seen[name]}])')
        return False
    return True


def _check_dates(problems, cls):
    """(start_date, end_date) of a class, in UTC; end_date is optional and after the start."""
    start_date = _check_datetime(problems, 'start_date', cls.start_date, required=True)
    end_date = _check_datetime(problems, 'end_date', getattr(cls, 'end_date', None), required=False)
    if start_date and end_date and end_date <= start_date:
        problems.add('end_date', f'{end_date.isoformat()} is not after start_date {start_date.isoformat()}')
    return start_date, end_date


def _check_datetime(problems, attribute, value, required):
    if value is None and not required:
        return None
    if not isinstance(value, datetime.datetime):
        problems.add(attribute, f'must be a datetime, got {value!r}')
        return None
    if value.tzinfo is None:
        # Airflow reads naive dates as UTC; say so explicitly in the spec.
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def _check_schedule(problems, value):
    if value is None or isinstance(value, (str, datetime.timedelta)):
        if isinstance(value, str) and not value.strip():
            problems.add('schedule_interval', 'must not be an empty string (use None for manual runs)')
        return value
    problems.add('schedule_interval', f'must be a cron expression, preset, timedelta or None, got {value!r}')
    return None


def _check_field_mapping(problems, mapping):
    if not isinstance(mapping, (list, tuple)) or not mapping:
        problems.add('field_mapping', 'must be a non-empty list of (source_field, column, SQL type)')
        return ()
    columns, seen = [], {}
    for index, entry in enumerate(mapping):
        where = f'field_mapping[{index}]'
        if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
            problems.add(where, f'must be (source_field, column, SQL type), got {entry!r}')
            continue
        source_field, column_name, sql_type = entry
        if not isinstance(source_field, str) or not source_field:
            problems.add(where, f'source field must be a non-empty string, got {source_field!r}')
            continue
        if not _check_new_name(problems, where, column_name, 'column', seen, 'field_mapping'):
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


def dataset_pipeline_spec(cls):
    """The checked spec of a dataset pipeline class, or PipelineDefinitionError listing
    every problem found (class name and attribute in each)."""
    problems = _Problems(cls)
    required = ('table_name', 'source_url', 'target_db', 'start_date', 'field_mapping')
    for attribute in required:
        if not hasattr(cls, attribute):
            problems.add(attribute, 'is missing')
    problems.raise_if_any()

    table_name = cls.table_name
    if _check_identifier(problems, 'table_name', table_name, 'table name'):
        if table_name.startswith(RESERVED_TABLE_PREFIX):
            problems.add('table_name', f'names starting with {RESERVED_TABLE_PREFIX!r} are reserved for data-flow')

    source_url = cls.source_url
    parsed = urllib.parse.urlsplit(source_url) if isinstance(source_url, str) else None
    if parsed is None or parsed.scheme not in ('http', 'https') or not parsed.hostname:
        problems.add('source_url', f'must be an http(s) URL, got {source_url!r}')

    if not isinstance(cls.target_db, str) or not cls.target_db:
        problems.add('target_db', f'must be an Airflow connection id, got {cls.target_db!r}')

    start_date, end_date = _check_dates(problems, cls)

    schedule = _check_schedule(problems, getattr(cls, 'schedule_interval', None))
    columns = _check_field_mapping(problems, cls.field_mapping)
    min_rows_ratio = getattr(cls, 'min_rows_ratio', DEFAULT_MIN_ROWS_RATIO)
    if min_rows_ratio is not None and (isinstance(min_rows_ratio, bool) or not isinstance(min_rows_ratio, (int, float))
                                       or not 0 <= min_rows_ratio <= 1):
        problems.add('min_rows_ratio', f'must be a number from 0 to 1, or None; got {min_rows_ratio!r}')
    all_null_columns = getattr(cls, 'all_null_columns', DEFAULT_ALL_NULL_COLUMNS)
    if all_null_columns not in ALL_NULL_ACTIONS:
        problems.add('all_null_columns', f'must be one of {", ".join(ALL_NULL_ACTIONS)}; got {all_null_columns!r}')
    problems.raise_if_any()
    return DatasetPipelineSpec(
        min_rows_ratio=min_rows_ratio,
        all_null_columns=all_null_columns,
        name=cls.__name__,
        table_name=table_name,
        source_url=source_url,
        target_db=cls.target_db,
        start_date=start_date,
        end_date=end_date,
        schedule=schedule,
        columns=columns,
        pipeline_class=cls,
    )


@dataclass
class Discovery:
    """What `discover` found: valid specs by class name, and what failed, by name."""

    specs: dict
    errors: dict


def pipeline_classes(marker, package=PIPELINES_PACKAGE):
    """Yield (name, class or import exception) for every class defined in `package`'s
    modules whose name contains `marker`. A module that fails to import is yielded
    once, as (module name, exception)."""
    root = importlib.import_module(package)
    for module_info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
        module_name = f'{package}.{module_info.name}'
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - one broken module must not hide the rest
            yield module_name, exc
            continue
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if marker in name and cls.__module__ == module.__name__:
                yield name, cls


def discover(marker=DATASET_PIPELINE_MARKER, spec_of=dataset_pipeline_spec, package=PIPELINES_PACKAGE):
    specs, errors = {}, {}
    for name, found in pipeline_classes(marker, package):
        if isinstance(found, Exception):
            errors[name] = found
            continue
        try:
            specs[name] = spec_of(found)
        except PipelineDefinitionError as exc:
            errors[name] = exc
    return Discovery(specs, errors)


# -- view pipelines ------------------------------------------------------------------------

VIEW_PIPELINE_MARKER = 'ViewPipeline'
# A view's name is `view_name` + '_YYYY_MM_DD' (+ '_HHMM' for intervals that start within a day).
VIEW_NAME_SUFFIX_BYTES = len('_YYYY_MM_DD_HHMM')


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
    fields: tuple
    where_clause: str | None
    params: dict
    start_date: datetime.datetime
    end_date: datetime.datetime | None
    catchup: bool
    schedule: object
    pipeline_class: type = field(repr=False, compare=False)


def view_pipeline_spec(cls):
    """The checked spec of a view pipeline class, or PipelineDefinitionError listing
    every problem found."""
    from dataflow import views  # parses SQL and templates; imported here to keep this module light

    problems = _Problems(cls)
    for attribute in ('view_name', 'dataset_pipeline', 'fields', 'start_date'):
        if not hasattr(cls, attribute):
            problems.add(attribute, 'is missing')
    problems.raise_if_any()

    view_name = cls.view_name
    if _check_identifier(problems, 'view_name', view_name, 'view name'):
        longest = MAX_IDENTIFIER_BYTES - VIEW_NAME_SUFFIX_BYTES
        if len(view_name.encode('utf-8')) > longest:
            problems.add('view_name', f'{view_name!r} is over {longest} bytes, leaving no room for the '
                                      'interval suffix within PostgreSQL\'s 63')

    dataset = None
    if not inspect.isclass(cls.dataset_pipeline):
        problems.add('dataset_pipeline', f'must be a dataset pipeline class, got {cls.dataset_pipeline!r}')
    else:
        try:
            dataset = dataset_pipeline_spec(cls.dataset_pipeline)
        except PipelineDefinitionError as exc:
            problems.add('dataset_pipeline', f'{cls.dataset_pipeline.__name__} is not valid: {exc}')

    fields = ()
    if cls.fields is True:
        if dataset is not None:
            fields = tuple(ViewField(column.name, None, is_column=True) for column in dataset.columns)
    elif isinstance(cls.fields, (list, tuple)) and cls.fields:
        fields, aliases = [], {}
        for index, entry in enumerate(cls.fields):
            where = f'fields[{index}]'
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
                problems.add(where, f'must be (SQL expression, alias), got {entry!r}')
                continue
            expression, alias = entry
            try:
                views.check_expression(expression)
            except ValueError as exc:
                problems.add(where, str(exc))
                continue
            if not _check_new_name(problems, where, alias, 'alias', aliases, 'fields'):
                continue
            aliases[alias] = index
            fields.append(ViewField(expression, alias))
        fields = tuple(fields)
    else:
        problems.add('fields', 'must be True (every column) or a non-empty list of (SQL expression, alias)')

    where_clause = getattr(cls, 'where_clause', None)
    if where_clause is not None:
        try:
            views.check_where_template(where_clause)
        except ValueError as exc:
            problems.add('where_clause', str(exc))

    params = getattr(cls, 'params', None) or {}
    if not isinstance(params, dict):
        problems.add('params', f'must be a dict, got {params!r}')

    start_date, end_date = _check_dates(problems, cls)
    catchup = getattr(cls, 'catchup', False)
    if not isinstance(catchup, bool):
        problems.add('catchup', f'must be True or False, got {catchup!r}')
    schedule = _check_schedule(problems, getattr(cls, 'schedule_interval', None))
    problems.raise_if_any()
    return ViewPipelineSpec(
        name=cls.__name__, view_name=view_name, dataset=dataset, fields=fields, where_clause=where_clause,
        params=params, start_date=start_date, end_date=end_date, catchup=catchup, schedule=schedule,
        pipeline_class=cls,
    )


def discover_views(package=PIPELINES_PACKAGE):
    return discover(VIEW_PIPELINE_MARKER, view_pipeline_spec, package)
