"""Column definitions from `field_mapping`, checked with PostgreSQL's own parser.

A mapping's third element ("character varying(255) NOT NULL") is SQL written by the
pipeline's author and goes into CREATE TABLE as it is, so it is parsed here first
(pglast embeds libpg_query, PostgreSQL's parser): it must be exactly one column type
with optional constraints, nothing more. That refuses typos and anything smuggled
after the type ("text); DROP TABLE x; --") before any SQL runs.
"""

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ColumnType:
    sql: str            # as the pipeline wrote it; goes into CREATE TABLE
    base_type: str      # canonical name, e.g. 'varchar', 'timestamptz', 'jsonb'
    is_array: bool
    not_null: bool      # NOT NULL or PRIMARY KEY
    primary_key: bool

    @property
    def is_json(self):
        return self.base_type in JSON_TYPES and not self.is_array


def _type_name(type_name_node):
    names = [n.sval for n in type_name_node.names]
    if names[0] == 'pg_catalog':
        names = names[1:]
    return '.'.join(names)


def _parse_column(sql):
    """The single ColumnDef node of `CREATE TABLE t (c <sql>)`, or ValueError."""
    try:
        statements = pglast.parse_sql(f'CREATE TABLE t (c {sql})')
    except pglast.parser.ParseError as exc:
        raise ValueError(f'PostgreSQL cannot parse column type {sql!r}: {exc}') from None
    elements = statements[0].stmt.tableElts if len(statements) == 1 else ()
    if len(statements) != 1 or len(elements) != 1 or not hasattr(elements[0], 'typeName'):
        raise ValueError(f'{sql!r} is not a single column type: it holds more SQL')
    return elements[0]


_KNOWN_TYPES = frozenset(_type_name(_parse_column(s).typeName) for s in _KNOWN_TYPE_SPELLINGS)


def parse_column_type(sql):
    """Parse the SQL type and constraints of one column, or raise ValueError saying why."""
    if not isinstance(sql, str) or not sql.strip():
        raise ValueError(f'column type must be a non-empty string, got {sql!r}')
    column = _parse_column(sql)
    base_type = _type_name(column.typeName)
    # A schema-qualified name is a user-defined type; only the database can check it
    # (`dataflow check` does). An unqualified unknown name is almost always a typo.
    if '.' not in base_type and base_type not in _KNOWN_TYPES:
        raise ValueError(f'unknown column type {base_type!r} in {sql!r}')
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
