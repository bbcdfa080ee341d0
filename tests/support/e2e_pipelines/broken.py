"""A pipeline class with mistakes, as someone might write it: the Datasets page lists it
with what is wrong, and its DAG fails naming the same."""

from datetime import datetime


class BrokenE2EDatasetPipeline:
    table_name = 'broken_e2e'
    source_path = '/v4/dataset/broken'
    start_date = datetime(2024, 1, 1)
    schedule = '@daily'
    field_mapping = [('id', 'id', 'bigitn PRIMARY KEY')]
