"""Date helpers for view pipelines' where-clauses, available in the template beside
Airflow's own (`ds`, `macros`, ...). Each takes a date as `ds` gives it ('YYYY-MM-DD') or
as a date/datetime, and returns 'YYYY-MM-DD', ready for `to_date(..., 'YYYY-MM-DD')`."""

import datetime
import re

from dataflow import constants
from dataflow.constants import ConfigurationError


def _date(value):
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


def month_start(value):
    return _date(value).replace(day=1).isoformat()


def month_end(value):
    day = _date(value)
    next_month = (day.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    return (next_month - datetime.timedelta(days=1)).isoformat()


def financial_year_first_month_day(raw=None):
    """(month, day) from FINANCIAL_YEAR_FIRST_MONTH_DAY ('MM-DD'); a wrong value is an error."""
    raw = constants.FINANCIAL_YEAR_FIRST_MONTH_DAY if raw is None else raw
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


def financial_year_start(value):
    """First day of the financial year that contains the date."""
    day = _date(value)
    month, first = financial_year_first_month_day()
    start = datetime.date(day.year, month, first)
    return (start if start <= day else start.replace(year=day.year - 1)).isoformat()


def financial_year_end(value):
    """Last day of the financial year that contains the date."""
    start = datetime.date.fromisoformat(financial_year_start(value))
    return (start.replace(year=start.year + 1) - datetime.timedelta(days=1)).isoformat()


TEMPLATE_HELPERS = {
    'month_start': month_start,
    'month_end': month_end,
    'financial_year_start': financial_year_start,
    'financial_year_end': financial_year_end,
}
