"""Times the page hand-off through Airflow Variables inside a real task: set, get and
delete of N pages of 1000 OMIS records, stored as data-flow stores them (COPY text,
zstd, base64) and as plain JSON."""

import time

import orjson
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Variable

from dataflow.definitions.datasets import dataset_pipeline_spec
from dataflow.load.copy import RecordRenderer
from dataflow.pipelines.datasets import OMISDatasetPipeline
from dataflow.runs import pagestore as handoff
from devstack.datahub_records import omis_record


def measure(pages=30, **_):
    pages = int(pages)  # templated: arrives as text
    records = [omis_record(i) for i in range(1000)]
    body = orjson.dumps({'next': None, 'results': records})
    renderer = RecordRenderer(dataset_pipeline_spec(OMISDatasetPipeline).columns)
    encodings = {
        'plain JSON': (lambda: body.decode('utf-8'), lambda value: orjson.loads(value)),
        'data-flow (COPY text, zstd)': (lambda: handoff.encode_page(renderer.render(records, 'bench')),
                                        lambda value: handoff.decode_page(value, 'bench')),
    }
    results = {}
    for name, (encode, decode) in encodings.items():
        keys = [f'dataflow-bench:{name[:4]}:{i}' for i in range(pages)]
        started = time.perf_counter()
        for key in keys:
            Variable.set(key, encode())
        set_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for key in keys:
            decode(Variable.get(key))
        get_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for key in keys:
            Variable.delete(key)
        delete_seconds = time.perf_counter() - started
        results[name] = {
            'stored_kb': round(len(encode()) / 1024, 1),
            'set_per_s': round(pages / set_seconds, 1),
            'get_per_s': round(pages / get_seconds, 1),
            'delete_per_s': round(pages / delete_seconds, 1),
            'handoff_rows_per_s': round(1000 * pages / (set_seconds + get_seconds + delete_seconds)),
        }
    return results


with DAG(dag_id='dataflow_handoff_bench', schedule=None, tags=['bench']):
    PythonOperator(task_id='measure', python_callable=measure, op_kwargs={'pages': '{{ params.pages }}'},
                   params={'pages': 30})
