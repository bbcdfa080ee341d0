"""Columns from `field_mapping`, their types checked with PostgreSQL's own parser.

A mapping's third element ("character varying(255) NOT NULL") is SQL written by the
pipeline's author and goes into CREATE TABLE as it is, so it is parsed here first
(pglast embeds libpg_query, PostgreSQL's parser): it must be exactly one column type
with optional constraints, nothing more. That refuses typos and anything smuggled
after the type ("text); DROP TABLE x; --") before any SQL runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import pglast
from pglast.enums import ConstrType


# The built-in types a mapping may use, in any spelling PostgreSQL accepts: they are
# parsed once so that e.g. "integer", "int" and "int4" all land on one canonical name.
_KNOWN_TYPE_SPELLINGS = (
    'boolean', 'smallint', 'integer', 'bigint', 'real', 'double precision', 'numeric',
    'character varying', 'character', 'text', 'bytea', 'uuid', 'json', 'jsonb', 'xml',
    'date', 'time', 'time with time zone', 'timestamp', 'timestamp with time zone',
    'interval', 'inet', 'cidr', 'macaddr', 'macaddr8', 'money', 'bit', 'bit varying',
    'tsvector', 'point', 'int4range', 'int8range', 'numrange', 'daterange', 'tsrange',
    'tstzrange',
)

JSON_TYPES = frozenset({'json', 'jsonb'})

# Other names people write for the same types: offered as suggestions too.
_SHORT_SPELLINGS = ('int', 'int2', 'int4', 'int8', 'float4', 'float8', 'bool', 'varchar', 'char',
                    'timestamptz', 'timetz', 'decimal')
# Words that may follow a type: a misspelt one is suggested like a type.
_CONSTRAINT_WORDS = ('primary', 'key', 'not', 'null', 'unique', 'default', 'check', 'collate')
# What the user's text is parsed inside; errors point into the user's text, not this.
_STATEMENT_PREFIX = 'CREATE TABLE t (c '


class ColumnTypeError(ValueError):
    """A column type PostgreSQL's parser refuses or data-flow does not know.

    The message quotes the text as the pipeline wrote it, with a caret line under the
    part that is wrong, and the nearest correct spelling when there is one.
    """

    def __init__(self, problem: str, text: str | None = None, start: int | None = None, end: int | None = None,
                 suggestion: str | None = None) -> None:
        self.problem, self.text, self.start, self.end, self.suggestion = problem, text, start, end, suggestion
        message = problem + (f' (did you mean {suggestion!r}?)' if suggestion else '')
        if start is not None:
            end = max(end or start + 1, start + 1)
            message += f'\n    {text}\n    {" " * start}{"^" * (end - start)}'
        super().__init__(message)


@dataclass(frozen=True)
class ColumnType:
    sql: str            # as the pipeline wrote it; goes into CREATE TABLE
    base_type: str      # canonical name, e.g. 'varchar', 'timestamptz', 'jsonb'
    is_array: bool
    not_null: bool      # NOT NULL or PRIMARY KEY
    primary_key: bool

    @property
    def is_json(self) -> bool:
        return self.base_type in JSON_TYPES and not self.is_array


def _type_name(type_name_node: Any) -> str:
    names = [n.sval for n in type_name_node.names]
    if names[0] == 'pg_catalog':
        names = names[1:]
    return '.'.join(names)


def _parse_column(sql: str) -> Any:
    """The single ColumnDef node of `CREATE TABLE t (c <sql>)`, or ColumnTypeError."""
    try:
        statements = pglast.parse_sql(_STATEMENT_PREFIX + sql + ')')
    except pglast.parser.ParseError as exc:
        raise _syntax_error(sql, *exc.args) from None
    statement: Any = statements[0].stmt if len(statements) == 1 else None
    elements: Any = statement.tableElts if statement is not None else ()
    if len(statements) != 1 or len(elements) != 1 or not hasattr(elements[0], 'typeName'):
        raise ColumnTypeError(f'{sql!r} is not a single column type: it holds more SQL')
    return elements[0]


_WORD = re.compile(r'[A-Za-z_][\w$]*')


def _syntax_error(sql: str, message: str, location: int | None = None) -> ColumnTypeError:
    """Where in the user's text PostgreSQL's parser stopped, and a correction that parses."""
    if not isinstance(location, int) or location < len(_STATEMENT_PREFIX):
        return ColumnTypeError(f'PostgreSQL cannot parse column type {sql!r}: {message}')
    start = location - len(_STATEMENT_PREFIX)
    if start >= len(sql.rstrip()):
        return ColumnTypeError('PostgreSQL cannot parse this column type: it ends too early', sql, len(sql.rstrip()))
    # The misspelt word is where the parser stopped or after it ('timestamp with tme
    # zone' stops at 'with'): the first one-word correction that parses is the suggestion,
    # and the caret goes under the word it corrects.
    for word in _WORD.finditer(sql, start):
        for candidate in _close_words(word.group(0)):
            corrected = sql[:word.start()] + candidate + sql[word.end():]
            try:
                pglast.parse_sql(_STATEMENT_PREFIX + corrected + ')')
            except pglast.parser.ParseError:
                continue
            return ColumnTypeError(f'PostgreSQL cannot parse this column type: {message}', sql, word.start(),
                                   word.end(), corrected)
    stopped_at = _WORD.match(sql, start)
    return ColumnTypeError(f'PostgreSQL cannot parse this column type: {message}', sql, start,
                           stopped_at.end() if stopped_at else start + 1)


# How alike (difflib's ratio) a suggestion must be: 'bigitn' -> 'bigint' is 0.83, while
# 'serial' -> 'decimal' (0.62) is no help.
_CUTOFF = 0.7


def _close_words(word: str) -> list[str]:
    words = {w for spelling in _KNOWN_TYPE_SPELLINGS + _SHORT_SPELLINGS for w in spelling.split()}
    matches = difflib.get_close_matches(word.lower(), sorted(words | set(_CONSTRAINT_WORDS)), n=3, cutoff=_CUTOFF)
    return [m.upper() if word.isupper() else m for m in matches]


def _nearest_type(name: str) -> str | None:
    matches = difflib.get_close_matches(name.lower(), _KNOWN_TYPE_SPELLINGS + _SHORT_SPELLINGS, n=1, cutoff=_CUTOFF)
    return matches[0] if matches else None


_KNOWN_TYPES = frozenset(_type_name(_parse_column(s).typeName) for s in _KNOWN_TYPE_SPELLINGS + _SHORT_SPELLINGS)


def parse_column_type(sql: object) -> ColumnType:
    """Parse the SQL type and constraints of one column, or raise ValueError
    (ColumnTypeError for the text itself) saying why."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError(f'column type must be a non-empty string, got {sql!r}')
    column = _parse_column(sql)
    base_type = _type_name(column.typeName)
    # A schema-qualified name is a user-defined type; only the database can check it
    # (`dataflow check` does). An unqualified unknown name is almost always a typo.
    if '.' not in base_type and base_type not in _KNOWN_TYPES:
        start: int = column.typeName.location - len(_STATEMENT_PREFIX)
        written = _WORD.match(sql, start)
        raise ColumnTypeError(f'unknown column type {base_type!r}', sql, start,
                              written.end() if written else start + len(base_type), _nearest_type(base_type))
    kinds = {c.contype for c in (column.constraints or ())}
    if ConstrType.CONSTR_GENERATED in kinds:
        raise ValueError(f'generated columns cannot be loaded: {sql!r}')
    if ConstrType.CONSTR_FOREIGN in kinds:
        raise ValueError(
            f'foreign keys are not allowed in {sql!r}: the target table is replaced on every load'
        )
    return ColumnType(
        sql=sql.strip(),
        base_type=base_type,
        is_array=bool(column.typeName.arrayBounds),
        not_null=bool(kinds & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}),
        primary_key=ConstrType.CONSTR_PRIMARY in kinds,
    )
