import pytest

from dataflow.definitions.columns import parse_column_type
from dataflow.definitions.fields import Column
from dataflow.errors import RecordError
from dataflow.load.copy import RecordRenderer


def renderer(*mapping):
    return RecordRenderer([Column(source, name, parse_column_type(sql)) for source, name, sql in mapping])


def rows(payload):
    return [line.split('\t') for line in payload.decode('utf-8').split('\n')[:-1]]


def test_literal_key_is_read_before_the_nested_path():
    r = renderer(('company__name', 'company', 'text'))
    records = [
        {'company__name': 'Flat', 'company': {'name': 'Nested'}},
        {'company': {'name': 'Nested'}},
        {'company': None},
        {'company': {'other': 1}},
        {},
    ]
    assert rows(r.render(records, 'p')) == [['Flat'], ['Nested'], ['\\N'], ['\\N'], ['\\N']]


def test_deeper_paths_and_non_objects_on_the_path():
    r = renderer(('a__b__c', 'c', 'text'))
    assert rows(r.render([{'a': {'b': {'c': 'deep'}}}, {'a': {'b': 'scalar'}}], 'p')) == [['deep'], ['\\N']]


def test_falsy_values_are_not_null():
    r = renderer(('n', 'n', 'integer'), ('b', 'b', 'boolean'), ('s', 's', 'text'), ('l', 'l', 'text[]'),
                 ('j', 'j', 'jsonb'), ('t', 't', 'text'))
    record = {'n': 0, 'b': False, 's': '', 'l': [], 'j': [], 't': None}
    assert rows(r.render([record], 'p')) == [['0', 'false', '', '{}', '[]', '\\N']]


def test_text_is_escaped_for_copy():
    r = renderer(('s', 's', 'text'))
    payload = r.render([{'s': 'tab\there\nnew\rline back\\slash "q" ü'}], 'p')
    assert payload == 'tab\\there\\nnew\\rline back\\\\slash "q" ü\n'.encode('utf-8')


def test_arrays_quote_their_elements():
    r = renderer(('a', 'a', 'text[]'))
    payload = r.render([{'a': ['plain', 'with "quote"', 'back\\slash', None, 'comma,brace}']}], 'p')
    assert payload.decode() == '{"plain","with \\\\"quote\\\\"","back\\\\\\\\slash",NULL,"comma,brace}"}\n'


def test_json_columns_take_any_json_value_and_none_is_null():
    r = renderer(('j', 'j', 'jsonb'))
    payload = r.render([{'j': {'a': [1, None]}}, {'j': 'text'}, {'j': None}, {'j': 0}], 'p')
    assert rows(payload) == [['{"a":[1,null]}'], ['"text"'], ['\\N'], ['0']]


def test_objects_in_text_columns_become_their_json_text():
    r = renderer(('o', 'o', 'text'))
    assert rows(r.render([{'o': {'k': 'v'}}], 'p')) == [['{"k":"v"}']]


def test_missing_not_null_field_names_page_record_and_field():
    r = renderer(('reference', 'ref', 'text PRIMARY KEY'), ('company__name', 'company', 'text NOT NULL'))
    with pytest.raises(RecordError) as error:
        r.render([{'reference': 'A1', 'company__name': 'ok'}, {'reference': 'B2'}], 'http://src/page?2')
    assert str(error.value) == (
        "page http://src/page?2: record 'B2': field company__name (column company): "
        'is missing, but its column is NOT NULL'
    )


def test_null_not_null_field_without_a_key_names_the_position():
    r = renderer(('company__name', 'company', 'text NOT NULL'))
    with pytest.raises(RecordError, match=r'record #1: field company__name \(column company\): is null'):
        r.render([{'company__name': 'x'}, {'company__name': None}], 'p')


def test_nul_characters_are_refused_by_name():
    r = renderer(('id', 'id', 'integer PRIMARY KEY'), ('s', 's', 'text'))
    with pytest.raises(RecordError, match=r"record 7: field s \(column s\): contains a NUL character"):
        r.render([{'id': 7, 's': 'a\x00b'}], 'p')


def test_scalar_in_array_column_is_refused():
    r = renderer(('a', 'a', 'text[]'))
    with pytest.raises(RecordError, match='array column needs a list, got str'):
        r.render([{'a': 'not a list'}], 'p')


def test_non_object_record_is_refused():
    with pytest.raises(RecordError, match='record #0: is a list, not an object'):
        renderer(('a', 'a', 'text')).render([['a']], 'p')


def test_a_payload_line_is_named_by_its_key_as_written():
    r = renderer(('ref', 'ref', 'text PRIMARY KEY'), ('n', 'n', 'integer'))
    payload = r.render([{'ref': 'A\tB', 'n': 1}, {'ref': "O'K", 'n': 2}], 'p')
    assert r.describe_line(payload, 1) == repr('A\tB')
    assert r.describe_line(payload, 2) == repr("O'K")
    assert r.describe_line(payload, 3) == 'line 3'
    numbered = renderer(('id', 'id', 'bigint PRIMARY KEY'))
    assert numbered.describe_line(numbered.render([{'id': 7}], 'p'), 1) == '7'
    keyless = renderer(('n', 'n', 'integer'))
    assert keyless.describe_line(keyless.render([{'n': 1}, {'n': 2}], 'p'), 2) == '#1'


def test_a_conversion_splits_a_joined_string_into_an_array():
    from dataflow.definitions.conversions import split

    r = RecordRenderer([Column('services', 'services', parse_column_type('text[]'), split(', '))])
    assert rows(r.render([{'services': 'Trade visit, Market research'}, {'services': ''}, {'services': None},
                          {'services': 'a "quoted", b\\slash'}], 'p')) == [
        ['{"Trade visit","Market research"}'], ['{}'], ['\\N'], ['{"a \\\\"quoted\\\\"","b\\\\\\\\slash"}']]
    with pytest.raises(RecordError, match=r"record #0: field services \(column services\): split\(', '\) needs a "
                                          r"string, got list \['x'\]"):
        r.render([{'services': ['x']}], 'p')
