import pytest

from dataflow.definitions.columns import parse_column_type


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


@pytest.mark.parametrize('sql, message', [
    # An unknown name: quoted once, the caret under it, and the nearest known type.
    ('bigitn NOT NULL', "unknown column type 'bigitn' (did you mean 'bigint'?)\n"
                        '    bigitn NOT NULL\n'
                        '    ^^^^^^'),
    ('txt[]', "unknown column type 'txt' (did you mean 'text'?)\n"
              '    txt[]\n'
              '    ^^^'),
    # A syntax error: the position is in what the user wrote (not in data-flow's SQL
    # around it), and the suggestion is the whole type corrected, checked by the parser.
    ('character varyng(255)', 'PostgreSQL cannot parse this column type: syntax error at or near "varyng" '
                              "(did you mean 'character varying(255)'?)\n"
                              '    character varyng(255)\n'
                              '              ^^^^^^'),
    ('timestamp with tme zone', 'PostgreSQL cannot parse this column type: syntax error at or near "with" '
                                "(did you mean 'timestamp with time zone'?)\n"
                                '    timestamp with tme zone\n'
                                '                   ^^^'),
    ('integer PRIMRY KEY', 'PostgreSQL cannot parse this column type: syntax error at or near "PRIMRY" '
                           "(did you mean 'integer PRIMARY KEY'?)\n"
                           '    integer PRIMRY KEY\n'
                           '            ^^^^^^'),
    ('numeric(10,', 'PostgreSQL cannot parse this column type: it ends too early\n'
                    '    numeric(10,\n'
                    '               ^'),
    # Nothing close enough: no suggestion rather than a misleading one.
    ('serial', "unknown column type 'serial'\n"
               '    serial\n'
               '    ^^^^^^'),
])
def test_type_errors_quote_the_text_point_into_it_and_suggest_a_fix(sql, message):
    with pytest.raises(ValueError) as error:
        parse_column_type(sql)
    assert str(error.value) == message
