"""Pipelines only the end-to-end tests run. Two contacts pipelines read two source
connections (two demo sources with keys of their own); an OMIS pipeline allows its
subtotal to be missing. None is scheduled: each runs only when a test triggers it, so
no scheduled run meets the faults a test has queued for its own."""

from dataflow.pipelines.datasets import ContactsDatasetPipeline, OMISDatasetPipeline


class FirstSourceContactsDatasetPipeline(ContactsDatasetPipeline):
    table_name = 'contacts_first'
    schedule_interval = None
    source_conn_id = 'first_source'


class SecondSourceContactsDatasetPipeline(ContactsDatasetPipeline):
    table_name = 'contacts_second'
    schedule_interval = None
    source_conn_id = 'second_source'


class TolerantOMISDatasetPipeline(OMISDatasetPipeline):
    table_name = 'omis_tolerant'
    schedule_interval = None
    allow_missing_fields = ['subtotal_cost']
