"""Value conversions a field may declare, as a fourth element of its mapping:

    ('services', 'service_names', 'text[]', split(', '))

There is one: `split(separator)`, a string joined with `separator` (as Data Hub aggregates
many-to-many names) into a text array. It is checked against the column when the class is
loaded (an array of a text type). Splitting cannot be exact when a name itself holds the
separator ("Overseas, introductions" becomes two names): where that matters, load the
string as text, as the shipped pipelines do, and split in SQL where you query it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataflow.definitions.columns import ColumnType

_TEXT_TYPES = frozenset({'text', 'varchar', 'bpchar'})


@dataclass(frozen=True)
class Split:
    separator: str

    def __str__(self) -> str:
        return f'split({self.separator!r})'

    def problem_with(self, column_type: ColumnType) -> str | None:
        """Why this conversion cannot feed the column, or None."""
        if not isinstance(self.separator, str) or not self.separator:
            return f'{self}: the separator must be a non-empty string'
        if not column_type.is_array or column_type.base_type not in _TEXT_TYPES:
            return f'{self} gives a list of strings: the column must be a text array (text[]), not {column_type.sql!r}'
        return None

    def __call__(self, value: Any) -> list[str]:
        """The parts of a string ('' has none); ValueError for anything else."""
        if not isinstance(value, str):
            raise ValueError(f'{self} needs a string, got {type(value).__name__} {value!r:.80}')
        return value.split(self.separator) if value else []


Conversion = Split


def split(separator: str = ', ') -> Split:
    """A string joined with `separator` into a text array."""
    return Split(separator)
