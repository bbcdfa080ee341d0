"""The shipped OMIS pipelines pointed at a test's own demo source, and OMIS records shaped
for view tests."""

from dataflow.definitions.datasets import DatasetPipelineSpec, dataset_pipeline_spec
from dataflow.pipelines.datasets import OMISDatasetPipeline
from devstack.omis_records import omis_record
from devstack.source_api import DemoSource


def omis_spec(source: DemoSource) -> DatasetPipelineSpec:
    """OMISDatasetPipeline reading `source`."""
    cls = type('OMISDatasetPipeline', (OMISDatasetPipeline,), {'source_url': source.dataset_url})
    return dataset_pipeline_spec(cls)


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
