"""A field of a dataset pipeline: where its value comes from in a source record, the column
it goes to, and the conversion it goes through, if any."""

from __future__ import annotations

from dataclasses import dataclass

from dataflow.definitions.columns import ColumnType
from dataflow.definitions.conversions import Conversion


@dataclass(frozen=True)
class Column:
    source_field: str   # key in the source record; see `source_path`
    name: str           # column in the target table
    type: ColumnType
    conversion: Conversion | None = None

    @property
    def source_path(self) -> tuple[str, ...]:
        """The nested path tried when the record has no literal `source_field` key:
        'company__name' reads record['company']['name']."""
        return tuple(self.source_field.split('__'))
