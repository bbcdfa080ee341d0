"""Schema drift, page by page (dataflow.runs.drift): a mapped field no record of a page has
fails the run naming the pipeline, the field, the page and the keys that appeared there;
fields allowed to be missing are remembered; unmapped keys are only reported."""

import pytest

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.errors import Fatal, SchemaDrift
from dataflow.pipelines.datasets import OMISDatasetPipeline
from dataflow.runs.drift import DriftCheck, unmapped_keys
from devstack.datahub_records import omis_record

OMIS = dataset_pipeline_spec(OMISDatasetPipeline)


def renamed(records, old, new):
    return [{new if key == old else key: value for key, value in record.items()} for record in records]


def test_pages_that_send_every_mapped_field_pass_and_their_keys_are_remembered():
    check = DriftCheck(OMIS)
    first = [omis_record(i) for i in range(10)]
    assert check.check('page-0', first) == set(first[0])
    assert check.check('page-1', [omis_record(i) for i in range(10, 20)]) == set()
    assert check.seen == set(first[0]) and check.missing == set()


def test_a_null_value_is_not_a_missing_field():
    records = [{**omis_record(i), 'invoice__subtotal_cost': None} for i in range(5)]
    DriftCheck(OMIS).check('page-0', records)


def test_a_field_renamed_mid_run_fails_naming_field_page_and_new_key():
    check = DriftCheck(OMIS)
    check.check('page-0', [omis_record(i) for i in range(5)])
    with pytest.raises(SchemaDrift) as error:
        check.check('page-1', renamed([omis_record(i) for i in range(5, 10)], 'subtotal_cost', 'net_price'))
    assert isinstance(error.value, Fatal)
    assert str(error.value) == (
        'OMISDatasetPipeline: page page-1: the source sent no field subtotal_cost (column net_price) in any record; '
        'keys that appeared there: net_price; did you mean net_price? Nothing was swapped. Map the new name, or if '
        "the source really stopped sending it, allow it: OMISDatasetPipeline.allow_missing_fields = ['subtotal_cost']")


def test_a_first_load_lists_the_unmapped_keys_closest_first():
    records = renamed([omis_record(i) for i in range(5)], 'primary_market__name', 'primary_market_name')
    with pytest.raises(SchemaDrift, match=r'no field primary_market__name \(column market\) in any record; '
                                          r'keys that appeared there: primary_market_name, .*; '
                                          r'did you mean primary_market_name\?'):
        DriftCheck(OMIS).check('page-0', records)


def test_keys_the_last_load_had_did_not_appear():
    known = frozenset(omis_record(0)) | {'net_price'}
    with pytest.raises(SchemaDrift, match='; no new key appeared there. Nothing was swapped'):
        DriftCheck(OMIS, known).check('page-0', renamed([omis_record(0)], 'subtotal_cost', 'net_price'))


def test_an_allowed_missing_field_is_remembered_not_failed():
    spec = dataset_pipeline_spec(type('OMISDatasetPipeline', (OMISDatasetPipeline,),
                                      {'allow_missing_fields': ['subtotal_cost']}))
    check = DriftCheck(spec)
    check.check('page-0', [{k: v for k, v in omis_record(0).items() if k != 'subtotal_cost'}])
    assert check.missing == {'subtotal_cost'}


def test_nested_fields_are_present_when_their_first_key_is():
    spec = dataset_pipeline_spec(type('NestedDatasetPipeline', (), {
        'table_name': 'n', 'source_path': '/n', 'start_date': OMIS.start_date,
        'field_mapping': [('company__name', 'company_name', 'text')]}))
    DriftCheck(spec).check('page-0', [{'company': {'name': 'Acme'}}])
    with pytest.raises(SchemaDrift):
        DriftCheck(spec).check('page-0', [{'firm': {'name': 'Acme'}}])


def test_unmapped_keys_are_the_keys_no_field_reads():
    assert unmapped_keys(OMIS, omis_record(0)) == ['company_id', 'contact_id', 'created_by__dit_team_id', 'id',
                                                  'net_cost', 'vat_cost']
