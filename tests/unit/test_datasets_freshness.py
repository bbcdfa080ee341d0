"""When the Datasets page calls a dataset stale, and how it says how old it is."""

import datetime

import pytest

from dataflow.airflow.ui.data import age, stale_after

UTC = datetime.timezone.utc
SWAPPED = datetime.datetime(2026, 3, 10, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize('schedule, due', [
    ('@daily', datetime.datetime(2026, 3, 12, 0, 0, tzinfo=UTC)),     # the 11th's run, then the 12th's
    ('0 6 * * *', datetime.datetime(2026, 3, 11, 6, 0, tzinfo=UTC)),  # 06:00 today, then tomorrow
    ('@hourly', datetime.datetime(2026, 3, 10, 4, 0, tzinfo=UTC)),
    ('@monthly', datetime.datetime(2026, 5, 1, 0, 0, tzinfo=UTC)),
    (datetime.timedelta(hours=6), datetime.datetime(2026, 3, 10, 14, 30, tzinfo=UTC)),
])
def test_a_dataset_is_stale_once_a_second_scheduled_run_after_its_swap_is_due(schedule, due):
    assert stale_after(schedule, SWAPPED) == due


@pytest.mark.parametrize('schedule', [None, '@once', '@continuous'])
def test_a_dataset_run_only_when_triggered_is_never_stale(schedule):
    assert stale_after(schedule, SWAPPED) is None


@pytest.mark.parametrize('seconds, said', [
    (0, 'just now'), (59, 'just now'), (60, '1 minute ago'), (3599, '59 minutes ago'), (7200, '2 hours ago'),
    (86400 * 3 + 5, '3 days ago'), (-30, 'just now'),  # a clock a little behind the database's
])
def test_age_is_said_in_the_largest_whole_unit(seconds, said):
    assert age(SWAPPED, SWAPPED + datetime.timedelta(seconds=seconds)) == said
