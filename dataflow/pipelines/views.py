"""View pipelines over the datasets of dataflow.pipelines.datasets."""
from datetime import datetime

from dataflow.pipelines.datasets import OMISDatasetPipeline


class CompletedOMISOrderViewPipeline:
    """OMIS orders completed in the month."""

    view_name = 'completed_omis_orders'
    dataset_pipeline = OMISDatasetPipeline
    start_date = datetime(2017, 11, 1)
    end_date = datetime(2018, 2, 1)
    catchup = True
    fields = [
        ('company_name', 'Company Name'),
        ('dit_team', 'DIT Team'),
        ('round(net_price / 100.0, 2)', 'Subtotal'),  # the order's subtotal_cost (pence), in pounds
        ('uk_region', 'UK Region'),
        ('market', 'Market'),
        ('sector', 'Sector'),
        ('services', 'Services'),
        ('delivery_date', 'Delivery Date'),
        ('payment_received_date', 'Payment Received Date'),
        ('completion_date', 'Completion Date'),
    ]
    where_clause = """
        order_status = 'complete' AND
        date_trunc('month', completion_date)::DATE =
        date_trunc('month', to_date('{{ ds }}', 'YYYY-MM-DD'));
    """
    schedule_interval = '@monthly'


class CancelledOMISOrderViewPipeline:
    """OMIS orders cancelled in the financial year to date (to the end of the run's month);
    the financial year starts on FINANCIAL_YEAR_FIRST_MONTH_DAY."""

    view_name = 'cancelled_omis_orders'
    dataset_pipeline = OMISDatasetPipeline
    start_date = datetime(2017, 11, 1)
    end_date = datetime(2018, 5, 1)
    catchup = True
    fields = [
        ('omis_order_reference', 'OMIS Order Reference'),
        ('company_name', 'Company Name'),
        ('dit_team', 'DIT Team'),
        ('round(net_price / 100.0, 2)', 'Subtotal'),  # the order's subtotal_cost (pence), in pounds
        ('market', 'Market'),
        ('cancelled_date', 'Cancelled Date'),
        ('cancellation_reason', 'Cancellation Reason'),
    ]
    where_clause = """
        order_status = 'cancelled' AND
        cancelled_date::DATE >= to_date('{{ financial_year_start(ds) }}', 'YYYY-MM-DD') AND
        cancelled_date::DATE <= to_date('{{ month_end(ds) }}', 'YYYY-MM-DD')
    """
    schedule_interval = '@monthly'
