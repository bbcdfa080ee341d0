"""The README's main use case, as a data engineer does it: add a file with a new pipeline
class where the README says, then run `bin/test`. In a copy of this working tree, a new
dataset pipeline and a view pipeline over it are added; every test but the end-to-end
ones must still pass there, and the new classes must get the standard tests."""

import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.support.checkout import working_tree_copy

NEW_PIPELINES = '''
"""A team's own pipelines: nothing else in the project names them."""
from datetime import datetime


class WeatherStationsDatasetPipeline:
    """Weather stations, from an API like Data Hub's."""

    table_name = 'weather_stations'
    source_path = '/v4/dataset/weather-stations'
    target_db = 'datasets_db'
    start_date = datetime(2024, 1, 1)
    end_date = None
    schedule_interval = '@weekly'
    field_mapping = [
        ('id', 'station_id', 'uuid PRIMARY KEY'),
        ('name', 'station_name', 'character varying(255) NOT NULL'),
        ('opened_on', 'opened_date', 'date'),
        ('elevation', 'elevation_metres', 'numeric(7, 1)'),
    ]


class HighWeatherStationsViewPipeline:
    """Stations above 500 m that opened by the end of the month."""

    view_name = 'high_weather_stations'
    dataset_pipeline = WeatherStationsDatasetPipeline
    start_date = datetime(2024, 1, 1)
    end_date = None
    fields = [('station_name', 'Station'), ('elevation_metres', 'Elevation (m)')]
    where_clause = "elevation_metres > 500 AND opened_date <= '{{ month_end(ds) }}'"
    schedule_interval = '@monthly'
'''


@pytest.mark.fresh_checkout
@pytest.mark.timeout(1800)
def test_a_new_pipeline_class_file_keeps_bin_test_green():
    with tempfile.TemporaryDirectory(prefix='dataflow-test-new-pipeline-') as scratch:
        checkout = Path(scratch) / 'data-flow'
        working_tree_copy(checkout)
        (checkout / 'dataflow' / 'pipelines' / 'weather.py').write_text(textwrap.dedent(NEW_PIPELINES))
        env = {**os.environ, 'DATAFLOW_STATE_DIR': str(Path(scratch) / 'state')}
        env.pop('AIRFLOW_HOME', None)  # the copy's tests make their own, as they would for the user
        result = subprocess.run(
            ['bin/test', '-m', 'not e2e and not fresh_checkout', '-p', 'no:cacheprovider', '-v'],
            cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1700)
        summary = result.stdout[-4000:]
        assert result.returncode == 0, summary
        passed = {line.split(' PASSED')[0] for line in result.stdout.splitlines() if ' PASSED' in line}
        for standard_test in ('test_postgresql_accepts_its_table[WeatherStationsDatasetPipeline]',
                              'test_its_not_null_fields_are_enforced_by_name[WeatherStationsDatasetPipeline]',
                              'test_its_view_renders_and_postgresql_accepts_it[HighWeatherStationsViewPipeline]',
                              'test_every_pipeline_class_is_a_dag_of_the_documented_shape'
                              '[WeatherStationsDatasetPipeline]'):
            assert any(name.endswith(standard_test) for name in passed), (standard_test, summary)
