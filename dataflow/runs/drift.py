"""Schema drift: the source no longer sends what the pipeline maps.

A mapped source field that no record of a page has (not even as null) went missing: the
source renamed or dropped it, and loading on would fill its column with NULLs. It fails
the run (a Fatal error, in fetch: before anything is swapped) naming the pipeline, the
field, the page, and the unmapped keys that appeared there, with the likeliest new name,
unless the pipeline allows that field to be missing (`allow_missing_fields`): it is then
reported, and loads as NULL. Keys no field maps are reported too, never failing a run.

"Appeared" means not seen earlier in the run nor in the source's keys at the last load
(the load history keeps them); a first load knows no earlier keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.errors import SchemaDrift

# At most this many keys are named in an error: the closest to the missing fields.
_KEYS_NAMED = 10


def mapped_keys(spec: DatasetPipelineSpec, keys: Iterable[str]) -> set[str]:
    """The keys among `keys` that some field reads: its literal key, or its nested path's first key."""
    keys = set(keys)
    return {c.source_field for c in spec.columns if c.source_field in keys} | {
        c.source_path[0] for c in spec.columns if c.source_field not in keys and c.source_path[0] in keys}


def unmapped_keys(spec: DatasetPipelineSpec, keys: Iterable[str]) -> list[str]:
    keys = set(keys)
    return sorted(keys - mapped_keys(spec, keys))


@dataclass
class DriftCheck:
    """Checks each page of a run, in order; remembers what it has seen (`seen`, `missing`)."""

    spec: DatasetPipelineSpec
    known: frozenset[str] = frozenset()   # the source's keys at the last load
    seen: set[str] = field(default_factory=set)      # the keys of this run's records so far
    missing: set[str] = field(default_factory=set)   # allowed fields found missing so far

    def check(self, page: str, records: Sequence[Any]) -> set[str]:
        """Check one page; the keys it brings that the run had not seen. Raises SchemaDrift."""
        keys: set[str] = set()
        for record in records:
            if isinstance(record, dict):
                keys.update(record)
        if not records:
            return set()
        absent = [c for c in self.spec.columns
                  if c.source_field not in keys and (len(c.source_path) == 1 or c.source_path[0] not in keys)]
        new = keys - self.seen
        failing = [c for c in absent if c.source_field not in self.spec.allow_missing_fields]
        if failing:
            appeared = sorted(set(unmapped_keys(self.spec, keys)) - self.seen - self.known)
            raise SchemaDrift(self._message(page, failing, appeared))
        self.missing.update(c.source_field for c in absent)
        self.seen |= keys
        return new

    def _message(self, page: str, failing: list[Any], appeared: list[str]) -> str:
        fields = ', '.join(f'{c.source_field} (column {c.name})' for c in failing)
        which = 'field' if len(failing) == 1 else 'fields'
        message = f'{self.spec.name}: page {page}: the source sent no {which} {fields} in any record'
        if appeared:
            ranked = sorted(appeared, key=lambda key: -max(
                difflib.SequenceMatcher(None, c.source_field, key).ratio() for c in failing))
            named = ', '.join(ranked[:_KEYS_NAMED]) + (f' and {len(ranked) - _KEYS_NAMED} more'
                                                        if len(ranked) > _KEYS_NAMED else '')
            message += f'; keys that appeared there: {named}'
            guesses = {c.source_field: _renamed_to(c.source_field, appeared, len(failing)) for c in failing}
            if len(failing) == 1 and guesses[failing[0].source_field]:
                message += f'; did you mean {guesses[failing[0].source_field]}?'
            elif any(guesses.values()):
                message += '; did you mean ' + ', '.join(f'{f} -> {g}' for f, g in guesses.items() if g) + '?'
        else:
            message += '; no new key appeared there'
        names = ', '.join(repr(c.source_field) for c in failing)
        return (message + ('' if message.endswith('?') else '.') +
                f' Nothing was swapped. Map the new name, or if the source really stopped sending it, allow it: '
                f'{self.spec.name}.allow_missing_fields = [{names}]')


def _renamed_to(missing: str, appeared: list[str], missing_count: int) -> str | None:
    """The key `missing` was likely renamed to: the closest by spelling, or the only key that
    appeared where the only field went missing."""
    close = difflib.get_close_matches(missing, appeared, n=1, cutoff=0.6)
    if close:
        return close[0]
    return appeared[0] if len(appeared) == 1 and missing_count == 1 else None
