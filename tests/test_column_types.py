import pytest

from dataflow.column_types import parse_column_type


@pytest.mark.parametrize('sql, base_type', [
    ('integer', 'int4'), ('int', 'int4'), ('bigint', 'int8'), ('boolean', 'bool'),
    ('character varying(255)', 'varchar'), ('varchar', 'varchar'), ('numeric(12, 2)', 'numeric'),
    ('timestamp with time zone', 'timestamptz'), ('timestamptz', 'timestamptz'), ('date', 'date'),
    ('text', 'text'), ('jsonb', 'jsonb'), ('json', 'json'), ('uuid', 'uuid'), ('double precision', 'float8'),
])
def test_builtin_types_get_one_canonical_name(sql, base_type):
    assert parse_column_type(sql).base_type == base_type


def test_constraints_and_arrays_are_read():
    key = parse_column_type('character varying(100) PRIMARY KEY')
    assert (key.primary_key, key.not_null, key.is_array) == (True, True, False)
    required = parse_column_type('text NOT NULL')
    assert (required.primary_key, required.not_null) == (False, True)
    array = parse_column_type('text[]')
    assert array.is_array and not array.is_json and not array.not_null
    assert parse_column_type('jsonb').is_json
    assert not parse_column_type('jsonb[]').is_json


@pytest.mark.parametrize('sql, message', [
    ('integr', "unknown column type 'integr'"),
    ('text); DROP TABLE omis_dataset; --', 'is not a single column type'),
    ('text, other integer', 'is not a single column type'),
    ('varchar(', 'PostgreSQL cannot parse'),
    ('', 'non-empty string'),
    (None, 'non-empty string'),
    ('integer REFERENCES company(id)', 'foreign keys are not allowed'),
    ('integer GENERATED ALWAYS AS (1) STORED', 'generated columns cannot be loaded'),
])
def test_bad_column_types_are_refused_with_the_reason(sql, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        parse_column_type(sql)


def test_schema_qualified_user_types_are_left_to_the_database():
    assert parse_column_type('reporting.order_status').base_type == 'reporting.order_status'
