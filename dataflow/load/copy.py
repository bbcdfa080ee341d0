"""PostgreSQL's COPY text format, both ways: source records rendered to it (the encoder,
in fetch), a rendered page read back to name a refused record (the decoder), and the COPY
of a rendered page into a table.

Fidelity rules: None (or a field the record lacks) is NULL; 0, False, '' and [] stay
what they are. json/jsonb columns take any JSON value as JSON; array columns take lists
as PostgreSQL arrays; other columns take scalars as text, and lists or objects as their
JSON text.

Field lookup: a record's literal key is used first ('company__name', as Data Hub's
flattened datasets send it); when the record has no such key, the name is read as a path
split on '__' through nested objects (record['company']['name']). A null or missing
object on that path makes the value NULL.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from dataflow.definitions.columns import ColumnType
from dataflow.definitions.fields import Column
from dataflow.errors import RecordError
from dataflow.load.catalog import DEFAULT_SCHEMA, qualified

NULL = '\\N'
_MISSING = object()

# COPY text format: backslash, tab, newline and carriage return must be escaped.
_NEEDS_ESCAPE = re.compile(r'[\\\t\n\r\x00]')
_ESCAPES = str.maketrans({'\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r'})
# Inside an array literal element (double-quoted): backslash and double quote.
_ARRAY_ESCAPES = str.maketrans({'\\': '\\\\', '"': '\\"'})


class _ValueProblem(ValueError):
    """Raised by renderers; turned into a RecordError naming page, record and field."""


def _escape(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    if '\x00' in text:
        raise _ValueProblem('contains a NUL character (\\u0000), which PostgreSQL text cannot store')
    return text.translate(_ESCAPES)


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode('utf-8')
    except TypeError as exc:
        raise _ValueProblem(f'cannot be written as JSON: {exc}') from None


def _scalar_text(value: Any) -> str:
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return _json_text(value)


def render_scalar(value: Any) -> str:
    return NULL if value is None else _escape(_scalar_text(value))


def render_json(value: Any) -> str:
    return NULL if value is None else _escape(_json_text(value))


def _array_literal(values: list[Any]) -> str:
    parts = []
    for element in values:
        if element is None:
            parts.append('NULL')
        elif isinstance(element, list):
            parts.append(_array_literal(element))
        else:
            parts.append('"' + _scalar_text(element).translate(_ARRAY_ESCAPES) + '"')
    return '{' + ','.join(parts) + '}'


def render_array(value: Any) -> str:
    if value is None:
        return NULL
    if not isinstance(value, list):
        raise _ValueProblem(f'array column needs a list, got {type(value).__name__} {value!r:.80}')
    return _escape(_array_literal(value))


def renderer_for(column_type: ColumnType) -> Callable[[Any], str]:
    if column_type.is_array:
        return render_array
    if column_type.is_json:
        return render_json
    return render_scalar


def _cell_renderer(column: Column) -> Callable[[Any], str]:
    """How one field's (non-null) value becomes its COPY text: its conversion, if it has one,
    then its column type's renderer."""
    render = renderer_for(column.type)
    convert = column.conversion
    if convert is None:
        return render

    def converted(value: Any) -> str:
        try:
            parts = convert(value)
        except ValueError as exc:
            raise _ValueProblem(str(exc)) from None
        return render(parts)

    return converted


def getter_for(column: Column) -> Callable[[dict[str, Any]], Any]:
    key, path = column.source_field, column.source_path

    if len(path) == 1:
        def get_key(record: dict[str, Any]) -> Any:
            return record.get(key, _MISSING)
        return get_key

    def get(record: dict[str, Any]) -> Any:
        value: Any = record.get(key, _MISSING)
        if value is not _MISSING:
            return value
        value = record
        for part in path:
            if value is None:
                return None
            if not isinstance(value, dict):
                return _MISSING
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return _MISSING
        return value

    return get


class RecordRenderer:
    """Renders pages of records for one pipeline's columns.

    `render(records, page)` returns the COPY text payload as bytes. A record that
    cannot be loaded raises RecordError naming the page, the record's key (its primary
    key value, else its position in the page) and the field.
    """

    def __init__(self, columns: Iterable[Column]) -> None:
        self.columns = tuple(columns)
        self._cells = [(getter_for(c), _cell_renderer(c), c.type.not_null) for c in self.columns]
        self._key_index = next((i for i, c in enumerate(self.columns) if c.type.primary_key), None)
        self._key_getter = getter_for(self.columns[self._key_index]) if self._key_index is not None else None

    def record_key(self, record: Any, index: int) -> str:
        """How errors name a record: its primary key value, else its position in the page."""
        if self._key_getter is not None and isinstance(record, dict):
            key = self._key_getter(record)
            if key is not _MISSING and key is not None:
                return repr(key) if isinstance(key, str) else str(key)
        return f'#{index}'

    def render(self, records: Sequence[Any], page: str) -> bytes:
        lines: list[str] = []
        append = lines.append
        cells = self._cells
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise RecordError(page, f'#{index}', None, f'is a {type(record).__name__}, not an object')
            row: list[str] = []
            column_index = 0
            try:
                for column_index, (get, render, not_null) in enumerate(cells):
                    value = get(record)
                    if value is None or value is _MISSING:
                        if not_null:
                            state = 'is missing' if value is _MISSING else 'is null'
                            raise _ValueProblem(f'{state}, but its column is NOT NULL')
                        row.append(NULL)
                    else:
                        row.append(render(value))
            except _ValueProblem as problem:
                column = self.columns[column_index]
                raise RecordError(
                    page, self.record_key(record, index),
                    f'{column.source_field} (column {column.name})', str(problem),
                ) from None
            append('\t'.join(row))
        if not lines:
            return b''
        lines.append('')
        return '\n'.join(lines).encode('utf-8')

    def describe_line(self, payload: bytes, line_number: int, line_in_page: int | None = None) -> str:
        """How errors name the record on 1-based line `line_number` of a rendered payload:
        its primary key value, else its position in its page (`line_in_page`, when the
        payload holds several pages)."""
        lines = payload.split(b'\n')
        index = line_number - 1
        if not 0 <= index < len(lines) - 1:
            return f'line {line_number}'
        if self._key_index is not None:
            cell = lines[index].decode('utf-8').split('\t')[self._key_index]
            if cell != NULL:
                key = _unescape(cell)
                quoted = self.columns[self._key_index].type.base_type not in _UNQUOTED_KEY_TYPES
                return repr(key) if quoted else key
        return f'#{(line_in_page or line_number) - 1}'


_UNQUOTED_KEY_TYPES = frozenset({'int2', 'int4', 'int8', 'numeric', 'float4', 'float8'})
_UNESCAPES = {'\\\\': '\\', '\\t': '\t', '\\n': '\n', '\\r': '\r'}
_ESCAPED = re.compile(r'\\[\\tnr]')


def _unescape(cell: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(0)], cell)


_COPY_CONTEXT = re.compile(r'line (\d+)(?:, column ([^:]+))?')


def copy_statement(table: str, columns: Iterable[Column], schema: str = DEFAULT_SCHEMA) -> sql.Composed:
    return sql.SQL('COPY {} ({}) FROM STDIN').format(
        qualified(schema, table), sql.SQL(', ').join(sql.Identifier(c.name) for c in columns)
    )


Pages = Sequence[tuple[str, int]]  # the pages of a payload, in order: (URL, rows)


def copy_payload(cursor: Cursor, table: str, renderer: RecordRenderer, payload: bytes, pages: Pages,
                 schema: str = DEFAULT_SCHEMA) -> None:
    """COPY pages rendered by `renderer`, one after another in `payload`, into `table` in
    the cursor's transaction (not committed). A value PostgreSQL refuses raises RecordError
    naming the page, record and field."""
    if not payload:
        return
    try:
        cursor.copy_expert(copy_statement(table, renderer.columns, schema), io.BytesIO(payload))
    except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
        raise _record_error(exc, renderer, payload, pages) from None


def copy_page(cursor: Cursor, table: str, renderer: RecordRenderer, records: Sequence[Any], page: str,
              schema: str = DEFAULT_SCHEMA) -> int:
    """Render and COPY one page of `records` (not committed); the number of rows copied."""
    copy_payload(cursor, table, renderer, renderer.render(records, page), [(page, len(records))], schema)
    return len(records)


def _page_of_line(pages: Pages, line_number: int) -> tuple[str, int]:
    """The page holding 1-based line `line_number` of a payload, and the line's number in it."""
    for url, rows in pages:
        if line_number <= rows:
            return url, line_number
        line_number -= rows
    return pages[-1][0], line_number


def _record_error(exc: psycopg2.Error, renderer: RecordRenderer, payload: bytes, pages: Pages) -> RecordError:
    diag = exc.diag
    problem = diag.message_primary or str(exc).strip()
    if diag.message_detail:
        problem += f' ({diag.message_detail})'
    match = _COPY_CONTEXT.search(diag.context or '')
    if not match:
        return RecordError(', '.join(url for url, _ in pages), '(unknown)', None, problem, exc.pgcode)
    line_number = int(match.group(1))
    page, line_in_page = _page_of_line(pages, line_number)
    record_key = renderer.describe_line(payload, line_number, line_in_page)
    column_name = match.group(2)
    field = None
    if column_name:
        column = next((c for c in renderer.columns if c.name == column_name), None)
        field = f'{column.source_field} (column {column_name})' if column else f'column {column_name}'
    return RecordError(page, record_key, field, problem, exc.pgcode)
