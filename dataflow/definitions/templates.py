"""A view pipeline's where-clause rendered for one run, and the view's name for it.

The template sees Airflow's names for the run (`ds`, `ds_nodash`, `logical_date`,
`data_interval_start`, `data_interval_end`), Airflow's `macros` (handed in by the caller:
this package does not import Airflow), the class's `params`, and data-flow's date
helpers below, which take a date as `ds` gives it ('YYYY-MM-DD') or a date/datetime and
return 'YYYY-MM-DD', ready for `to_date(..., 'YYYY-MM-DD')`. No I/O.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import jinja2

from dataflow import settings
from dataflow.definitions.views import TEMPLATES, ViewPipelineSpec, check_where
from dataflow.errors import ConfigurationError, ViewError

DateLike = str | datetime.date


def _date(value: DateLike) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise ValueError(f'expected a date or YYYY-MM-DD, got {value!r}')


def month_start(value: DateLike) -> str:
    return _date(value).replace(day=1).isoformat()


def month_end(value: DateLike) -> str:
    day = _date(value)
    next_month = (day.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    return (next_month - datetime.timedelta(days=1)).isoformat()


def financial_year_first_month_day(raw: str | None = None) -> tuple[int, int]:
    """(month, day) from FINANCIAL_YEAR_FIRST_MONTH_DAY ('MM-DD'); a wrong value is an error."""
    raw = settings.current().financial_year_first_month_day if raw is None else raw
    match = re.fullmatch(r'(\d{2})-(\d{2})', raw or '')
    if not match:
        raise ConfigurationError(f'FINANCIAL_YEAR_FIRST_MONTH_DAY must be MM-DD, e.g. 04-01; got {raw!r}')
    month, day = int(match.group(1)), int(match.group(2))
    try:
        # 2001 is not a leap year: a financial year cannot start on a day most years lack.
        datetime.date(2001, month, day)
    except ValueError:
        raise ConfigurationError(
            f'FINANCIAL_YEAR_FIRST_MONTH_DAY {raw!r} is not a day that every year has') from None
    return month, day


def financial_year_start(value: DateLike) -> str:
    """First day of the financial year that contains the date."""
    day = _date(value)
    month, first = financial_year_first_month_day()
    start = datetime.date(day.year, month, first)
    return (start if start <= day else start.replace(year=day.year - 1)).isoformat()


def financial_year_end(value: DateLike) -> str:
    """Last day of the financial year that contains the date."""
    start = datetime.date.fromisoformat(financial_year_start(value))
    return (start.replace(year=start.year + 1) - datetime.timedelta(days=1)).isoformat()


HELPERS = {
    'month_start': month_start,
    'month_end': month_end,
    'financial_year_start': financial_year_start,
    'financial_year_end': financial_year_end,
}


def template_context(logical_date: datetime.datetime, macros: Any, data_interval_start: datetime.datetime | None = None,
                     data_interval_end: datetime.datetime | None = None,
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a where-clause can use for a run starting at `logical_date`."""
    return {
        'ds': logical_date.strftime('%Y-%m-%d'),
        'ds_nodash': logical_date.strftime('%Y%m%d'),
        'logical_date': logical_date,
        'data_interval_start': data_interval_start or logical_date,
        'data_interval_end': data_interval_end or logical_date,
        'macros': macros,
        'params': params or {},
        **HELPERS,
    }


def render_where_clause(spec: ViewPipelineSpec, context: dict[str, Any]) -> str | None:
    """The spec's where-clause rendered for a run, checked to be one SQL condition; None
    when the class has none."""
    if not spec.where_clause or not spec.where_clause.strip():
        return None
    try:
        rendered = TEMPLATES.from_string(spec.where_clause).render(**context)
    except jinja2.UndefinedError as exc:
        raise ViewError(f'{spec.name}.where_clause: {exc.message}') from None
    except Exception as exc:  # noqa: BLE001 - a helper's own error, e.g. a bad FINANCIAL_YEAR_FIRST_MONTH_DAY
        raise ViewError(f'{spec.name}.where_clause: {type(exc).__name__}: {exc}') from None
    # Written as a statement's ending in the classes data engineers copy from.
    rendered = rendered.strip().rstrip(';').strip()
    try:
        check_where(rendered)
    except ValueError as exc:
        raise ViewError(f'{spec.name}.where_clause rendered to {rendered!r}: {exc}') from None
    return rendered


def view_name_for(spec: ViewPipelineSpec, logical_date: datetime.datetime) -> str:
    """`view_name` + '_YYYY_MM_DD' of the run's logical date (the start of its interval),
    + '_HHMM' when that is not midnight."""
    suffix = logical_date.strftime('_%Y_%m_%d')
    if (logical_date.hour, logical_date.minute) != (0, 0):
        suffix += logical_date.strftime('_%H%M')
    return spec.view_name + suffix


def logical_date_of(value: object) -> datetime.datetime:
    """A run's logical date, or a clear error for runs that have none."""
    if value is None:
        raise ViewError('view pipelines need a logical date: trigger the run with one '
                        '(runs triggered without a logical date have no interval)')
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
