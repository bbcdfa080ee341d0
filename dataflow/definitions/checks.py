"""Checks that dataset and view pipeline classes share. Each adds its problems to a
`Problems`, so that a class's author sees every problem at once."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable
from typing import Any

from dataflow.errors import DefinitionError

# PostgreSQL truncates longer identifiers silently; two columns could then collide.
MAX_IDENTIFIER_BYTES = 63

# Tables whose names start with this belong to data-flow (staging and replaced tables).
RESERVED_TABLE_PREFIX = '_df_'

# A class's schedule: a cron expression or preset, a timedelta, or None (manual runs only).
Schedule = str | datetime.timedelta | None


class Problems:
    """Collects every problem of one class, so its author sees them all at once."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.found: list[tuple[str, str]] = []

    def add(self, attribute: str, problem: str) -> None:
        self.found.append((attribute, problem))

    def raise_if_any(self) -> None:
        if self.found:
            raise DefinitionError(self.cls.__name__, self.found)


def identifier(problems: Problems, attribute: str, value: object, what: str) -> bool:
    """Whether `value` can be a PostgreSQL identifier; a problem says why not."""
    if not isinstance(value, str) or not value:
        problems.add(attribute, f'{what} must be a non-empty string, got {value!r}')
        return False
    size = len(value.encode('utf-8'))
    if size > MAX_IDENTIFIER_BYTES:
        problems.add(attribute, f'{what} {value!r} is {size} bytes; PostgreSQL identifiers are at most '
                                f'{MAX_IDENTIFIER_BYTES}')
        return False
    if '\x00' in value:
        problems.add(attribute, f'{what} {value!r} contains a NUL character')
        return False
    return True


def new_name(problems: Problems, where: str, name: object, what: str, seen: dict[str, int], listing: str) -> bool:
    """A valid identifier not used before in this list: `seen` maps names to indexes."""
    if not identifier(problems, where, name, what):
        return False
    assert isinstance(name, str)
    if name in seen:
        problems.add(where, f'duplicate {what} {name!r} (also {listing}[{seen[name]}])')
        return False
    return True


def dates(problems: Problems, cls: type) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """(start_date, end_date) of a class, in UTC; end_date is optional and after the start."""
    start_date = _datetime(problems, 'start_date', getattr(cls, 'start_date', None), required=True)
    end_date = _datetime(problems, 'end_date', getattr(cls, 'end_date', None), required=False)
    if start_date and end_date and end_date <= start_date:
        problems.add('end_date', f'{end_date.isoformat()} is not after start_date {start_date.isoformat()}')
    return start_date, end_date


def _datetime(problems: Problems, attribute: str, value: object, required: bool) -> datetime.datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, datetime.datetime):
        problems.add(attribute, f'must be a datetime, got {value!r}')
        return None
    if value.tzinfo is None:
        # Airflow reads naive dates as UTC; say so explicitly in the spec.
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


def schedule(problems: Problems, value: Any) -> Schedule:
    if value is None or isinstance(value, (str, datetime.timedelta)):
        if isinstance(value, str) and not value.strip():
            problems.add('schedule_interval', 'must not be an empty string (use None for manual runs)')
        return value
    problems.add('schedule_interval', f'must be a cron expression, preset, timedelta or None, got {value!r}')
    return None


def class_problems(cls: type, required: Iterable[str], optional: Iterable[str]) -> Problems:
    """The Problems of a pipeline class, begun with its missing and unknown attributes.
    DefinitionError at once when a required one is missing (the checks that follow need
    them all); else the caller's checks go on, so that one error lists every problem."""
    problems = Problems(cls)
    required = tuple(required)
    missing = [attribute for attribute in required if not hasattr(cls, attribute)]
    for attribute in missing:
        problems.add(attribute, 'is missing')
    known_attributes(problems, cls, (*required, *optional))
    if missing:
        problems.raise_if_any()
    return problems


def known_attributes(problems: Problems, cls: type, known: Iterable[str]) -> None:
    """Every public attribute of the class (its own or a base class's) must be one data-flow
    knows: a misspelt one would otherwise be ignored, and its setting silently lost."""
    known = sorted(known)
    names = {name for klass in cls.__mro__[:-1] for name in vars(klass) if not name.startswith('_')}
    for name in sorted(names - set(known)):
        # Close in spelling ('min_row_ratio'), or a short form of one ('where' for where_clause).
        nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or [
            k for k in known if k.startswith(name + '_') or name.startswith(k + '_')][:1]
        problems.add(name, 'unknown attribute' + (f'; did you mean {nearest[0]}?' if nearest else ''))
