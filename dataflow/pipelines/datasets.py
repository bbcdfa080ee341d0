"""Dataset pipelines of Data Hub's datasets."""
from datetime import datetime

from dataflow import settings


class OMISDatasetPipeline:
    """Orders for the Overseas Market Introduction Service, from Data Hub."""

    table_name = 'omis_dataset'
    source_url = '{}/v4/dataset/omis-dataset'.format(settings.current().datahub_base_url)
    target_db = 'datasets_db'
    start_date = datetime(2019, 1, 1)
    end_date = None
    schedule_interval = '@daily'

    field_mapping = [
        ('reference', 'omis_order_reference', 'character varying(100) PRIMARY KEY'),
        ('company__name', 'company_name', 'character varying(255) NOT NULL'),
        ('dit_team__name', 'dit_team', 'character varying(255)'),
        ('subtotal_cost', 'subtotal', 'integer'),  # pence
        ('uk_region__name', 'uk_region', 'text'),
        ('market__name', 'market', 'text'),
        ('sector__segment', 'sector', 'text'),
        ('services', 'services', 'text[]'),
        ('status', 'order_status', 'character varying(100)'),
        ('created_on', 'created_date', 'timestamp with time zone'),
        ('completed_on', 'completion_date', 'timestamp with time zone'),
        ('delivery_date', 'delivery_date', 'date'),
        ('paid_on', 'payment_received_date', 'timestamp with time zone'),
        ('cancelled_on', 'cancelled_date', 'timestamp with time zone'),
        ('cancellation_reason__name', 'cancellation_reason', 'text'),
    ]
