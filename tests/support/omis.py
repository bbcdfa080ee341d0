"""The shipped OMIS pipelines, and OMIS records shaped for view tests."""

from dataflow.definitions.datasets import DatasetPipelineSpec, dataset_pipeline_spec
from dataflow.pipelines.datasets import OMISDatasetPipeline
from devstack.datahub_records import omis_record


def omis_spec() -> DatasetPipelineSpec:
    """OMISDatasetPipeline's spec: its source is whatever Source port a test gives the run."""
    return dataset_pipeline_spec(OMISDatasetPipeline)


def order(index, status, when, version=0):
    """An OMIS record with its status and the matching date set to `when`."""
    record = omis_record(index, version=version)
    record['status'] = status
    record['completed_on'] = when if status == 'complete' else None
    record['cancelled_on'] = when if status == 'cancelled' else None
    return record


def completed_in(records, month):
    """(company name,) of the records completed in `month` ('YYYY-MM'), sorted."""
    return sorted(
        (r['company__name'],) for r in records
        if r['status'] == 'complete' and r['completed_on'] and r['completed_on'][:7] == month
    )


def paged_last(record):
    """The record, created after every generated one: Data Hub pages by created_on, so it
    comes on the last page."""
    return {**record, 'created_on': '2030-01-01T00:00:00Z'}
