import os
import socket

import psycopg2

from devstack import services


def unused_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_an_embedded_server_starts_when_none_answers(state_dir):
    nowhere = f'postgresql://postgres@127.0.0.1:{unused_port()}/postgres'
    assert not services.reachable(nowhere)
    with services.postgres_server(admin_url=nowhere, state_dir=state_dir) as admin_dsn:
        assert admin_dsn != nowhere
        with services.scratch_database(admin_dsn) as dsn:
            conn = psycopg2.connect(dsn)
            with conn.cursor() as cursor:
                cursor.execute('CREATE TABLE t (id int); INSERT INTO t VALUES (1); SELECT count(*) FROM t')
                assert cursor.fetchone() == (1,)
            conn.close()
    assert os.path.isdir(os.path.join(state_dir, 'pgdata'))


def test_scratch_databases_are_dropped_even_after_a_failure(pg_admin_dsn):
    try:
        with services.scratch_database(pg_admin_dsn, prefix='dataflow_dropcheck') as dsn:
            name = psycopg2.extensions.parse_dsn(dsn)['dbname']
            raise RuntimeError('test body failed')
    except RuntimeError:
        pass
    conn = psycopg2.connect(pg_admin_dsn)
    with conn.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM pg_database WHERE datname = %s', (name,))
        assert cursor.fetchone() == (0,)
    conn.close()


def test_an_embedded_redis_starts_when_none_answers():
    import redis

    nowhere = f'redis://127.0.0.1:{unused_port()}/0'
    assert not services.redis_reachable(nowhere)
    with services.redis_server(nowhere) as url:
        assert url != nowhere
        client = redis.Redis.from_url(url)
        client.set('dataflow-test', 'ok')
        assert client.get('dataflow-test') == b'ok'
    assert not services.redis_reachable(url)
