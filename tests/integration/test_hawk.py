import io
import logging
import socket

import mohawk
import mohawk.util
import pytest

from dataflow.errors import SourceError
from dataflow.sources.hawk import HawkAuth
from devstack.source_api import FORGED, MALFORMED_JSON, SLOW, UNSIGNED, DemoSource
from tests.support.sources import TEST_HAWK_ID, TEST_HAWK_KEY, hawk_client

# The published Hawk test vectors (mozilla/hawk README).
VECTOR_ID = 'dh37fgj492je'
VECTOR_KEY = 'werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn'
VECTOR_TS = 1353832234
VECTOR_NONCE = 'j4h3g2'
VECTOR_EXT = 'some-app-ext-data'


def records(n, start=0):
    """OMIS-like records, in the order Data Hub pages them (by created_on)."""
    return [{'reference': f'R{i}', 'company__name': f'Company {i}', 'created_on': f'2020-01-01T00:{i // 60:02d}:{i % 60:02d}Z'}
            for i in range(start, start + n)]


def test_signed_get_matches_the_spec_vector():
    auth = HawkAuth(VECTOR_ID, VECTOR_KEY, 'sha256')
    sender = auth.sign('http://example.com:8000/resource/1?b=1&a=2',
                       timestamp=VECTOR_TS, nonce=VECTOR_NONCE, ext=VECTOR_EXT)
    assert 'mac="6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="' in sender.request_header
    assert f'ts="{VECTOR_TS}"' in sender.request_header


def test_payload_hash_from_a_file_object_matches_the_spec_vector():
    # Responses are verified by handing mohawk the body as a file object (fast path).
    body = io.BytesIO(b'Thank you for flying Hawk')
    assert mohawk.util.calculate_payload_hash(body, 'sha256', 'text/plain') == \
        b'Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY='
    sender = mohawk.Sender(
        {'id': VECTOR_ID, 'key': VECTOR_KEY, 'algorithm': 'sha256'},
        'http://example.com:8000/resource/1?b=1&a=2', 'POST',
        content=io.BytesIO(b'Thank you for flying Hawk'), content_type='text/plain',
        nonce=VECTOR_NONCE, ext=VECTOR_EXT, _timestamp=VECTOR_TS,
    )
    assert 'mac="aSe1DERmZuRl3pI36/9BdZmnErTw3sNzOOAUlfeKjVw="' in sender.request_header


def test_follows_next_to_the_end(source, hawk_client):
    source.omis.put(*records(250))
    pages = list(hawk_client.pages(source.omis.url))
    assert [len(p.results) for p in pages] == [100, 100, 50]
    assert [r['reference'] for p in pages for r in p.results] == [f'R{i}' for i in range(250)]
    assert pages[-1].next_url is None


def test_empty_dataset_is_one_empty_page(source, hawk_client):
    assert [p.results for p in hawk_client.pages(source.omis.url)] == [[]]


def test_unsigned_response_is_rejected(source, hawk_client):
    source.omis.put(*records(10))
    source.omis.fail_next(0, UNSIGNED)
    with pytest.raises(SourceError, match='response is not signed: no Server-Authorization header') as error:
        list(hawk_client.pages(source.omis.url))
    assert error.value.url == source.omis.url


def test_forged_response_is_rejected(source, hawk_client):
    source.omis.put(*records(10))
    source.omis.fail_next(0, FORGED)
    with pytest.raises(SourceError, match=r'response signature rejected \(MisComputedContentHash\)'):
        list(hawk_client.pages(source.omis.url))


def test_wrong_key_is_refused_without_retrying(source):
    source.omis.put(*records(10))
    client = hawk_client(TEST_HAWK_ID, 'not-the-key', max_attempts=3, backoff_base=0.01)
    with pytest.raises(SourceError, match='HTTP 401'):
        list(client.pages(source.omis.url))
    assert source.omis.requests[0] == 1


def test_stale_timestamp_resynchronises_and_retries_once():
    with DemoSource(TEST_HAWK_ID, TEST_HAWK_KEY, clock_skew=3600) as skewed:
        skewed.clock_skew_answers = True  # as mozilla's Hawk servers do (Data Hub's answer is a plain 401)
        skewed.omis.put(*records(10))
        client = hawk_client(max_attempts=1)
        pages = list(client.pages(skewed.omis.url))
        assert len(pages[0].results) == 10
        assert 3590 < client.auth.clock_offset < 3610
        assert skewed.omis.requests[0] == 2


def test_stale_timestamp_answer_with_a_bad_tsm_is_not_trusted(source):
    source.omis.put(*records(1))
    auth = HawkAuth(TEST_HAWK_ID, TEST_HAWK_KEY)
    assert auth.signed_server_time('Hawk ts="1353832234", tsm="forged=", error="Stale timestamp"') is None
    good_tsm = mohawk.util.calculate_ts_mac(1353832234, auth._credentials).decode()
    assert auth.signed_server_time(f'Hawk ts="1353832234", tsm="{good_tsm}", error="Stale timestamp"') == 1353832234


def test_transient_503_is_retried(source, hawk_client):
    source.omis.put(*records(10))
    source.omis.fail_next(0, 503, 503)
    pages = list(hawk_client.pages(source.omis.url))
    assert len(pages[0].results) == 10
    assert source.omis.requests[0] == 3


def test_persistent_503_gives_up_with_a_clear_error(source, hawk_client):
    source.omis.put(*records(10))
    source.omis.fail_next(0, 503, 503, 503, 503)
    with pytest.raises(SourceError, match=r'/v4/dataset/omis-dataset: gave up after 3 attempts: HTTP 503'):
        list(hawk_client.pages(source.omis.url))
    assert source.omis.requests[0] == 3


def test_429_honours_retry_after(source):
    source.omis.put(*records(10))
    source.omis.fail_next(0, (429, '2'))
    delays = []
    client = hawk_client(backoff_base=0.01, backoff_max=30, sleep=delays.append)
    assert len(list(client.pages(source.omis.url))[0].results) == 10
    assert delays == [2.0]


def test_backoff_grows_exponentially_with_jitter_and_is_capped(source):
    source.omis.put(*records(1))
    source.omis.fail_next(0, 500, 502, 504, 500, 503)
    delays = []
    client = hawk_client(max_attempts=6, backoff_base=1, backoff_max=6, sleep=delays.append)
    list(client.pages(source.omis.url))
    caps = [1, 2, 4, 6, 6]
    assert len(delays) == 5
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps)), delays


def test_slow_page_times_out_and_is_retried(source):
    source.omis.put(*records(10))
    source.omis.fail_next(0, (SLOW, 1.5))
    client = hawk_client(read_timeout=0.5, max_attempts=2, backoff_base=0.01)
    assert len(list(client.pages(source.omis.url))[0].results) == 10
    source.omis.fail_next(0, (SLOW, 1.5), (SLOW, 1.5))
    with pytest.raises(SourceError, match=r'gave up after 2 attempts: timed out \(connect .* s, read 0.5 s\)'):
        list(client.pages(source.omis.url))


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as unused:
        unused.bind(('127.0.0.1', 0))
        port = unused.getsockname()[1]
    client = hawk_client(max_attempts=2, backoff_base=0.01)
    with pytest.raises(SourceError, match='gave up after 2 attempts: connection failed'):
        list(client.pages(f'http://127.0.0.1:{port}/v4/dataset/omis-dataset'))


def test_malformed_json_is_reported_not_retried(source, hawk_client):
    source.omis.put(*records(10))
    source.omis.fail_next(0, MALFORMED_JSON)
    with pytest.raises(SourceError, match='response is not valid JSON'):
        list(hawk_client.pages(source.omis.url))
    assert source.omis.requests[0] == 1


def test_unknown_path_is_an_http_error(source, hawk_client):
    with pytest.raises(SourceError, match=r'HTTP 404: \{"detail":"Not found."\}'):
        list(hawk_client.pages(source.url + '/v4/dataset/nothing-here'))


def test_secrets_are_never_logged(source, caplog):
    source.omis.put(*records(150))
    source.omis.fail_next(1, 503)
    client = hawk_client(max_attempts=3, backoff_base=0.01)
    with caplog.at_level(logging.DEBUG):
        assert sum(len(p.results) for p in client.pages(source.omis.url)) == 150
        with DemoSource(TEST_HAWK_ID, TEST_HAWK_KEY, clock_skew=-600) as skewed:
            skewed.clock_skew_answers = True
            skewed.omis.put(*records(1))
            list(hawk_client().pages(skewed.omis.url))
    logged = '\n'.join(r.getMessage() for r in caplog.records)
    assert 'retrying' in logged and 'resynchronised' in logged  # the logs were captured
    assert TEST_HAWK_KEY not in logged
    assert 'mac="' not in logged
    assert TEST_HAWK_KEY not in repr(client)


def test_a_stale_timestamp_answered_as_data_hub_does_names_the_connection_and_the_clock():
    # Data Hub (django-hawk) answers a request signed more than 60 s off with a plain 401:
    # no signed server time to resynchronise with. The error says what to check.
    with DemoSource(TEST_HAWK_ID, TEST_HAWK_KEY, clock_skew=600) as skewed:
        skewed.omis.put(*records(1))
        with pytest.raises(SourceError, match=r"HTTP 401: connection 'test-source' was refused: check its "
                                              r"credentials \(and, for Hawk, that this machine's clock is within a "
                                              r"minute of the source's\)"):
            list(hawk_client(max_attempts=3).pages(skewed.omis.url))
        assert skewed.omis.requests[0] == 1  # not retried: a refusal will not change
