"""What a dataset table must hold for the records a source sent: each mapped value as
PostgreSQL gives it back, cell for cell, worked out from the source's JSON and the
column's type (and conversion), independently of data-flow's own rendering."""

import datetime
import decimal

from psycopg2 import sql

_READERS = {
    'timestamptz': lambda v: datetime.datetime.fromisoformat(v.replace('Z', '+00:00')),
    'date': lambda v: datetime.date.fromisoformat(v[:10]),   # a timestamp's date part, as PostgreSQL reads it
    'numeric': lambda v: decimal.Decimal(str(v)),
    'int4': int, 'int8': int, 'int2': int,
    'bool': bool,
}


def expected_value(column, record):
    value = record.get(column.source_field)
    if value is None:
        return None
    if column.conversion is not None:
        value = column.conversion(value)
    read = _READERS.get(column.type.base_type)
    if column.type.is_array:
        return [None if v is None else (read(v) if read else v) for v in value]
    return read(value) if read else value


def _order(row):
    return tuple('' if value is None else str(value) for value in row)


def expected_rows(spec, records):
    """The rows (in an order of their own) as SELECT of the spec's columns returns them."""
    return sorted((tuple(expected_value(c, r) for c in spec.columns) for r in records), key=_order)


def table_rows(conn, spec, table=None):
    """The table's rows, in expected_rows' order."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT {} FROM {}').format(
            sql.SQL(', ').join(sql.Identifier(c.name) for c in spec.columns),
            sql.Identifier(table or spec.table_name)))
        rows = cursor.fetchall()
    conn.commit()
    return sorted(rows, key=_order)
