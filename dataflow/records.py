"""Source records to PostgreSQL COPY text format, value for value.

Fidelity rules: None (or a field the record lacks) is NULL; 0, False, '' and [] stay
what they are. json/jsonb columns take any JSON value as JSON; array columns take lists
as PostgreSQL arrays; other columns take scalars as text, and lists or objects as their
JSON text.

Field lookup: a record's literal key is used first ('company__name', as Data Hub's
flattened datasets send it); when the record has no such key, the name is read as a path
split on '__' through nested objects (record['company']['name']). A null or missing
object on that path makes the value NULL.
"""

import re

import orjson

from dataflow.errors import RecordError

NULL = '\\N'
_MISSING = object()

# COPY text format: backslash, tab, newline and carriage return must be escaped.
_NEEDS_ESCAPE = re.compile(r'[\\\t\n\r\x00]')
_ESCAPES = str.maketrans({'\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r'})
# Inside an array literal element (double-quoted): backslash and double quote.
_ARRAY_ESCAPES = str.maketrans({'\\': '\\\\', '"': '\\"'})


class _ValueProblem(ValueError):
    """Raised by renderers; turned into a RecordError naming page, record and field."""


def _escape(text):
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    if '\x00' in text:
        raise _ValueProblem('contains a NUL character (\\u0000), which PostgreSQL text cannot store')
    return text.translate(_ESCAPES)


def _json_text(value):
    try:
        return orjson.dumps(value).decode('utf-8')
    except TypeError as exc:
        raise _ValueProblem(f'cannot be written as JSON: {exc}') from None


def _scalar_text(value):
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return _json_text(value)


def render_scalar(value):
    return NULL if value is None else _escape(_scalar_text(value))


def render_json(value):
    return NULL if value is None else _escape(_json_text(value))


def _array_literal(values):
    parts = []
    for element in values:
        if element is None:
            parts.append('NULL')
        elif isinstance(element, list):
            parts.append(_array_literal(element))
        else:
            parts.append('"' + _scalar_text(element).translate(_ARRAY_ESCAPES) + '"')
    return '{' + ','.join(parts) + '}'


def render_array(value):
    if value is None:
        return NULL
    if not isinstance(value, list):
        raise _ValueProblem(f'array column needs a list, got {type(value).__name__} {value!r:.80}')
    return _escape(_array_literal(value))


def renderer_for(column_type):
    if column_type.is_array:
        return render_array
    if column_type.is_json:
        return render_json
    return render_scalar


def getter_for(column):
    key, path = column.source_field, column.source_path

    if len(path) == 1:
        def get(record):
            return record.get(key, _MISSING)
        return get

    def get(record):
        value = record.get(key, _MISSING)
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

    def __init__(self, columns):
        self.columns = tuple(columns)
        self._cells = [(getter_for(c), renderer_for(c.type), c.type.not_null) for c in self.columns]
        self._key_index = next((i for i, c in enumerate(self.columns) if c.type.primary_key), None)
        self._key_getter = getter_for(self.columns[self._key_index]) if self._key_index is not None else None

    def record_key(self, record, index):
        """How errors name a record: its primary key value, else its position in the page."""
        if self._key_getter is not None and isinstance(record, dict):
            key = self._key_getter(record)
            if key is not _MISSING and key is not None:
                return repr(key) if isinstance(key, str) else str(key)
        return f'#{index}'

    def render(self, records, page):
        lines = []
        append = lines.append
        cells = self._cells
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise RecordError(page, f'#{index}', None, f'is a {type(record).__name__}, not an object')
            row = []
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

    def describe_line(self, payload, line_number):
        """How errors name the record on 1-based line `line_number` of a rendered page."""
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
        return f'#{index}'


_UNQUOTED_KEY_TYPES = frozenset({'int2', 'int4', 'int8', 'numeric', 'float4', 'float8'})
_UNESCAPES = {'\\\\': '\\', '\\t': '\t', '\\n': '\n', '\\r': '\r'}
_ESCAPED = re.compile(r'\\[\\tnr]')


def _unescape(cell):
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(0)], cell)
