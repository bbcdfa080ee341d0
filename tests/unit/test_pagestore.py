import pytest

from dataflow.errors import DataflowError
from dataflow.runs import pagestore


def test_pages_round_trip_and_shrink():
    payload = ('OMIS00000001/19\tAcme Widgets Ltd\t\\N\t0\t{"Market research"}\n' * 1000).encode()
    value = pagestore.encode_page(payload)
    assert isinstance(value, str) and value.startswith('zstd:')
    assert len(value) < len(payload) / 10
    assert pagestore.decode_page(value, 'k') == payload


def test_pages_joined_into_one_value_decode_to_their_text_in_order():
    pages = [f'page {n}\trow {i}\n'.encode() * 3 for n in range(3) for i in range(2)]
    joined = pagestore.join_pages([pagestore.encode_page(page) for page in pages])
    assert joined.startswith('zstd:') and joined.count('zstd:') == 1 and joined.count(',') == len(pages) - 1
    assert pagestore.decode_page(joined, 'k') == b''.join(pages)
    assert pagestore.join_pages([pagestore.encode_page(pages[0])]) == pagestore.encode_page(pages[0])


def test_a_value_not_stored_by_dataflow_is_refused_by_key():
    with pytest.raises(DataflowError, match="some-key does not hold a page stored by data-flow \\(codec 'z1'\\)"):
        pagestore.decode_page('z1:abc', 'some-key')


def test_keys_are_unique_per_run_attempt_and_page():
    keys = {pagestore.page_key(pagestore.run_key('Dag', run, clear), page, attempt)
            for run in ('manual__1', 'manual__2') for clear in (0, 1) for page in (0, 1, 2) for attempt in (1, 2)}
    assert len(keys) == 24
    assert all(k.startswith(pagestore.PAGE_KEY_PREFIX + ':') and len(k) < 250 for k in keys)


def test_pages_can_be_encoded_and_decoded_from_many_threads_at_once():
    import concurrent.futures

    payloads = [(f'row {i}\t' * 5000 + '\n').encode() for i in range(64)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        values = list(pool.map(pagestore.encode_page, payloads))
        decoded = list(pool.map(pagestore.decode_page, values, ['k'] * len(values)))
    assert decoded == payloads
