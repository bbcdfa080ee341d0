import datetime
import decimal
import threading
import uuid

import psycopg2
import psycopg2.errorcodes
import pytest
from psycopg2 import sql

from dataflow.definitions.columns import parse_column_type
from dataflow.definitions.fields import Column
from dataflow.errors import RecordError, SwapError
from dataflow.load import copy as copy_format
from dataflow.load import ddl
from dataflow.load.copy import RecordRenderer
from dataflow.load.strategies import replace
from tests.support.postgres import count, leftover_tables

UTC = datetime.timezone.utc

TRICKY_MAPPING = [
    ('id', 'id', 'integer PRIMARY KEY'),
    ('t', 't', 'text'),
    ('vc', 'vc', 'character varying(50)'),
    ('n_int', 'n_int', 'integer'),
    ('n_big', 'n_big', 'bigint'),
    ('n_num', 'n_num', 'numeric(20, 6)'),
    ('f', 'f', 'double precision'),
    ('b', 'b', 'boolean'),
    ('d', 'd', 'date'),
    ('ts', 'ts', 'timestamp with time zone'),
    ('tsn', 'tsn', 'timestamp'),
    ('j', 'j', 'json'),
    ('jb', 'jb', 'jsonb'),
    ('arr', 'arr', 'text[]'),
    ('iarr', 'iarr', 'integer[]'),
    ('u', 'u', 'uuid'),
    ('nested__value', 'nested_value', 'text'),
]
COLUMNS = [Column(s, n, parse_column_type(t)) for s, n, t in TRICKY_MAPPING]

# (record as the source sends it, row as PostgreSQL must give it back)
TRICKY = [
    (
        {'id': 1, 't': '', 'vc': '', 'n_int': 0, 'n_big': 0, 'n_num': 0, 'f': 0.0, 'b': False,
         'j': [], 'jb': {}, 'arr': [], 'iarr': [], 'nested__value': ''},
        (1, '', '', 0, 0, decimal.Decimal('0'), 0.0, False, None, None, None, [], {}, [], [], None, ''),
    ),
    (
        {'id': 2},  # every other field missing: NULL
        (2,) + (None,) * 16,
    ),
    (
        {'id': 3, 't': None, 'vc': None, 'n_int': None, 'b': None, 'j': None, 'jb': None, 'arr': None,
         'nested': None},
        (3,) + (None,) * 16,
    ),
    (
        {'id': 4, 't': 'He said "hi"\tthen\nleft \\ back\r\nend', 'vc': 'Zoë – ✓ 株式会社',
         'arr': ['a"b', 'c\\d', 'e,f', None, '', 'ü', 'NULL'], 'iarr': [1, None, -3],
         'j': 'a "string"', 'jb': {'k': [1, None, 'é', {'x': False}], 'tab': '\t'},
         'nested': {'value': "O'Reilly"}},
        (4, 'He said "hi"\tthen\nleft \\ back\r\nend', 'Zoë – ✓ 株式会社', None, None, None, None, None,
         None, None, None, 'a "string"', {'k': [1, None, 'é', {'x': False}], 'tab': '\t'},
         ['a"b', 'c\\d', 'e,f', None, '', 'ü', 'NULL'], [1, None, -3], None, "O'Reilly"),
    ),
    (
        {'id': 5, 't': 'NULL', 'vc': '\\N', 'n_big': 9007199254740993, 'n_num': '12345678901234.123456',
         'f': 1.5e-10, 'b': True, 'd': '2020-02-29', 'ts': '2019-03-31T00:59:59.123456+05:30',
         'tsn': '2020-02-29T23:59:59', 'u': '6f1c2a52-4d8e-4c1b-9a57-0f0e7a3c9d11', 'j': {'a': 1},
         'nested__value': 'flat wins', 'nested': {'value': 'nested loses'}},
        (5, 'NULL', '\\N', None, 9007199254740993, decimal.Decimal('12345678901234.123456'), 1.5e-10, True,
         datetime.date(2020, 2, 29),
         datetime.datetime(2019, 3, 30, 19, 29, 59, 123456, tzinfo=UTC),
         datetime.datetime(2020, 2, 29, 23, 59, 59), {'a': 1}, None, None, None,
         '6f1c2a52-4d8e-4c1b-9a57-0f0e7a3c9d11', 'flat wins'),
    ),
]


def fetch_all(conn, table, order_by='id'):
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT * FROM {} ORDER BY {}').format(sql.Identifier(table), sql.Identifier(order_by)))
        return cursor.fetchall()


def test_copy_round_trips_tricky_values_exactly(datasets_conn):
    ddl.create_table(datasets_conn, 'tricky', COLUMNS)
    with datasets_conn.cursor() as cursor:
        copied = copy_format.copy_page(cursor, 'tricky', RecordRenderer(COLUMNS), [r for r, _ in TRICKY], 'page-1')
    datasets_conn.commit()
    assert copied == len(TRICKY)
    got = fetch_all(datasets_conn, 'tricky')
    for (record, expected), row in zip(TRICKY, got):
        for column, want, have in zip(COLUMNS, expected, row):
            assert have == want and type(have) is type(want), (record['id'], column.name, want, have)
    assert len(got) == len(TRICKY)


def test_postgresql_refusal_names_the_page_record_and_field(datasets_conn):
    ddl.create_table(datasets_conn, 'tricky', COLUMNS)
    records = [{'id': 1, 'd': '2020-01-01'}, {'id': 2, 'd': '2020-02-30'}]
    with datasets_conn.cursor() as cursor, pytest.raises(RecordError) as error:
        copy_format.copy_page(cursor, 'tricky', RecordRenderer(COLUMNS), records, 'http://src/page?3')
    datasets_conn.rollback()
    assert str(error.value).startswith('page http://src/page?3: record 2: field d (column d): ')
    assert error.value.sqlstate == psycopg2.errorcodes.DATETIME_FIELD_OVERFLOW


def test_a_refusal_in_pages_stored_together_names_the_page_it_came_from(datasets_conn):
    ddl.create_table(datasets_conn, 'tricky', COLUMNS)
    renderer = RecordRenderer(COLUMNS)
    pages = [[{'id': 1}, {'id': 2}], [{'id': 3}], [{'id': 4, 'd': '2020-01-01'}, {'id': 5, 'd': '2020-02-30'}]]
    payload = b''.join(renderer.render(records, f'page-{i}') for i, records in enumerate(pages))
    parts = [(f'http://src/page?{i}', len(records)) for i, records in enumerate(pages)]
    with datasets_conn.cursor() as cursor, pytest.raises(RecordError) as error:
        copy_format.copy_payload(cursor, 'tricky', renderer, payload, parts)
    datasets_conn.rollback()
    # Line 5 of the payload: the second record of the third page.
    assert str(error.value).startswith('page http://src/page?2: record 5: field d (column d): ')


def test_duplicate_key_across_pages_names_the_key(datasets_conn):
    ddl.create_table(datasets_conn, 'tricky', COLUMNS)
    renderer = RecordRenderer(COLUMNS)
    with datasets_conn.cursor() as cursor:
        copy_format.copy_page(cursor, 'tricky', renderer, [{'id': 1}, {'id': 2}], 'page-1')
        with pytest.raises(RecordError) as error:
            copy_format.copy_page(cursor, 'tricky', renderer, [{'id': 3}, {'id': 2}], 'page-2')
    datasets_conn.rollback()
    assert str(error.value).startswith('page page-2: record 2: ')
    assert error.value.sqlstate == psycopg2.errorcodes.UNIQUE_VIOLATION


def test_staging_names_are_distinct_per_run_and_fit(datasets_conn):
    long_name = 'é' * 31  # 62 bytes
    names = {replace.staging_table_name(long_name, f'manual__2024-01-0{i}') for i in range(1, 10)}
    assert len(names) == 9
    for name in names:
        assert len(name.encode()) <= 63
        ddl.create_table(datasets_conn, name, COLUMNS[:2])
    datasets_conn.commit()


# -- swap ------------------------------------------------------------------------------

def make_table(conn, name, rows, extra_column=True):
    """A table like the pipeline's, filled with `rows` generated rows."""
    with conn.cursor() as cursor:
        columns = 'id integer PRIMARY KEY, label text' + (', extra text' if extra_column else '')
        cursor.execute(sql.SQL('CREATE TABLE {} (' + columns + ')').format(sql.Identifier(name)))
        cursor.execute(
            sql.SQL("INSERT INTO {} (id, label) SELECT g, 'row ' || g FROM generate_series(1, %s) g").format(
                sql.Identifier(name)),
            (rows,),
        )
    conn.commit()




def test_swap_without_a_target_puts_staging_in_place(datasets_conn):
    staging = replace.staging_table_name('orders', 'run-1')
    make_table(datasets_conn, staging, 10)
    result = replace.swap(datasets_conn, staging, 'orders')
    assert (result.rows_before, result.rows_after) == (None, 10)
    assert count(datasets_conn, 'orders') == 10
    assert leftover_tables(datasets_conn) == []
    with datasets_conn.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass")
        assert cursor.fetchall() == [('orders_pkey',)]


@pytest.fixture
def reader_role(datasets_conn, datasets_dsn, pg_admin_dsn):
    name = f'df_reader_{uuid.uuid4().hex[:8]}'
    admin = psycopg2.connect(pg_admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL('CREATE ROLE {}').format(sql.Identifier(name)))
    yield name
    datasets_conn.rollback()
    with datasets_conn.cursor() as cursor:
        cursor.execute(sql.SQL('DROP OWNED BY {}').format(sql.Identifier(name)))
    datasets_conn.commit()
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL('DROP ROLE {}').format(sql.Identifier(name)))
    admin.close()


def test_views_grants_and_comment_survive_a_swap(datasets_conn, reader_role):
    make_table(datasets_conn, 'orders', 5)
    role = sql.Identifier(reader_role)
    with datasets_conn.cursor() as cursor:
        cursor.execute('CREATE VIEW recent_orders AS SELECT id, label FROM orders WHERE id > 2')
        cursor.execute('CREATE VIEW recent_order_count AS SELECT count(*) AS n FROM recent_orders')
        cursor.execute(sql.SQL('GRANT SELECT ON orders, recent_orders, recent_order_count TO {}').format(role))
        cursor.execute(sql.SQL('GRANT USAGE ON SCHEMA public TO {}').format(role))
        cursor.execute("COMMENT ON TABLE orders IS 'Orders, refreshed daily'")
    datasets_conn.commit()

    staging = replace.staging_table_name('orders', 'run-2')
    make_table(datasets_conn, staging, 50)
    result = replace.swap(datasets_conn, staging, 'orders')

    assert (result.rows_before, result.rows_after) == (5, 50)
    assert result.views_repointed == ('public.recent_orders',)
    assert result.lock_seconds < 1
    assert count(datasets_conn, 'orders') == 50
    assert count(datasets_conn, 'recent_orders') == 48
    with datasets_conn.cursor() as cursor:
        cursor.execute('SELECT n FROM recent_order_count')
        assert cursor.fetchone()[0] == 48
        cursor.execute("SELECT obj_description('orders'::regclass, 'pg_class')")
        assert cursor.fetchone()[0] == 'Orders, refreshed daily'
        cursor.execute(sql.SQL('SET ROLE {}').format(role))
        cursor.execute('SELECT count(*) FROM orders')
        assert cursor.fetchone()[0] == 50
        cursor.execute('SELECT n FROM recent_order_count')
        assert cursor.fetchone()[0] == 48
        cursor.execute('RESET ROLE')
    datasets_conn.commit()
    assert leftover_tables(datasets_conn) == []


def test_failed_swap_leaves_the_target_untouched(datasets_conn):
    make_table(datasets_conn, 'orders', 5)
    with datasets_conn.cursor() as cursor:
        cursor.execute('CREATE VIEW order_extras AS SELECT id, extra FROM orders')
    datasets_conn.commit()
    staging = replace.staging_table_name('orders', 'run-3')
    make_table(datasets_conn, staging, 50, extra_column=False)
    with pytest.raises(SwapError, match=r'^swap of public.orders failed, target unchanged: view public.order_extras '
                                        r'cannot read the new table: .*\bextra\b') as error:
        replace.swap(datasets_conn, staging, 'orders')
    assert error.value.sqlstate == psycopg2.errorcodes.UNDEFINED_COLUMN
    assert count(datasets_conn, 'orders') == 5
    assert count(datasets_conn, 'order_extras') == 5
    assert leftover_tables(datasets_conn) == [staging]  # the caller drops it


def test_materialized_views_are_refused_by_name(datasets_conn):
    make_table(datasets_conn, 'orders', 5)
    with datasets_conn.cursor() as cursor:
        cursor.execute('CREATE MATERIALIZED VIEW order_snapshot AS SELECT * FROM orders')
    datasets_conn.commit()
    staging = replace.staging_table_name('orders', 'run-4')
    make_table(datasets_conn, staging, 6)
    with pytest.raises(SwapError, match='materialized views read it \\(public.order_snapshot\\)'):
        replace.swap(datasets_conn, staging, 'orders')
    assert count(datasets_conn, 'orders') == 5


def test_swap_gives_up_when_readers_hold_the_lock(datasets_conn, datasets_dsn):
    make_table(datasets_conn, 'orders', 5)
    staging = replace.staging_table_name('orders', 'run-5')
    make_table(datasets_conn, staging, 6)
    reader = psycopg2.connect(datasets_dsn)
    try:
        with reader.cursor() as cursor:
            cursor.execute('SELECT count(*) FROM orders')  # holds ACCESS SHARE until rollback
            with pytest.raises(SwapError, match='could not lock it in 2 attempts; target unchanged'):
                replace.swap(datasets_conn, staging, 'orders', lock_timeout_ms=50, attempts=2)
    finally:
        reader.rollback()
        reader.close()
    assert count(datasets_conn, 'orders') == 5
    assert replace.swap(datasets_conn, staging, 'orders').rows_after == 6


def test_readers_only_ever_see_a_complete_table_during_swaps(datasets_conn, datasets_dsn):
    base_rows, swaps = 100_000, 20
    make_table(datasets_conn, 'orders', base_rows)
    with datasets_conn.cursor() as cursor:
        cursor.execute('CREATE VIEW orders_view AS SELECT * FROM orders')
    datasets_conn.commit()

    seen, errors, done = [], [], threading.Event()

    def read():
        conn = psycopg2.connect(datasets_dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                while not done.is_set():
                    cursor.execute('SELECT count(*) FROM orders')
                    seen.append(cursor.fetchone()[0])
                    cursor.execute('SELECT count(*) FROM orders_view')
                    seen.append(cursor.fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, swaps + 1):
            staging = replace.staging_table_name('orders', f'run-{i}')
            make_table(datasets_conn, staging, base_rows + i)
            assert replace.swap(datasets_conn, staging, 'orders').rows_after == base_rows + i
    finally:
        done.set()
        reader.join()

    assert errors == []
    valid = set(range(base_rows, base_rows + swaps + 1))
    assert set(seen) <= valid, sorted(set(seen) - valid)[:5]
    assert seen == sorted(seen), 'a reader saw an older table after a newer one'
    assert len(set(seen)) > 1 and len(seen) > swaps
    assert leftover_tables(datasets_conn) == []
