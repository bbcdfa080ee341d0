"""The Hawk demo source (devstack.source_api.DemoSource) in a process of its own, serving
`rows` OMIS-shaped records (devstack.datahub_records.omis_record(0 .. rows-1)) at
`/v4/dataset/omis-dataset`, `page_size` records a page, to Hawk id HAWK_ID with the given key.

    source = Source(hawk_key, rows, page_size, port)   # returns once it answers at source.url
    ...
    source.stop()

Kept light (no dataflow or Airflow imports beyond what DemoSource needs), so that each
bench script can start a source without loading the others' dependencies. The caller puts
the repository root on sys.path, as the bench scripts do.
"""

import multiprocessing
import multiprocessing.queues
from types import TracebackType

from devstack.datahub_records import omis_record
from devstack.source_api import DemoSource

HAWK_ID = 'bench'


def serve(hawk_key: str, rows: int, page_size: int, port: int, ready: multiprocessing.queues.Queue,
          hawk_id: str = HAWK_ID) -> None:
    """The source process: fill the OMIS dataset, say where it listens, serve until terminated."""
    source = DemoSource(hawk_id, hawk_key, page_size=page_size, port=port)
    source.omis.put(*(omis_record(i) for i in range(rows)))
    ready.put(source.url)
    source.serve_forever()


class Source:
    """The demo source in a process of its own, so that it does not share a GIL with
    whatever it is measured against."""

    def __init__(self, hawk_key: str, rows: int, page_size: int, port: int, hawk_id: str = HAWK_ID) -> None:
        ready: multiprocessing.queues.Queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(
            target=serve, args=(hawk_key, rows, page_size, port, ready, hawk_id), daemon=True)
        self.process.start()
        # Generating a million records takes a while on a busy machine; the URL comes once
        # they are all in and the socket is bound.
        self.url: str = ready.get(timeout=1200)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()

    def __enter__(self) -> 'Source':
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
