"""Quality gates: checks a loaded staging table must pass before it replaces the target.

- Row count: the new table must have at least `min_rows_ratio` of the old one's rows
  (default 90%), so a source that suddenly returns little cannot empty a dataset.
- All-NULL columns: a mapped column with no value in any row usually means the source
  renamed or dropped a field; `all_null_columns` says whether that warns or fails.
- Duplicate primary keys cannot reach this point: the staging table has the mapped
  PRIMARY KEY, and COPY fails naming the key (dataflow.load.copy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from dataflow.definitions.datasets import DatasetPipelineSpec
from dataflow.errors import QualityGateFailed
from dataflow.load.catalog import DEFAULT_SCHEMA, row_count, table_exists

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateReport:
    rows_before: int | None
    rows_after: int
    all_null_columns: tuple[str, ...]
    warnings: tuple[str, ...]


def check(conn: Connection, spec: DatasetPipelineSpec, staging: str) -> GateReport:
    """Check the staging table against the spec's gates; raise QualityGateFailed naming
    the gate, or return what was found."""
    rows_after = row_count(conn, staging)
    rows_before = row_count(conn, spec.table_name) if table_exists(conn, spec.table_name) else None
    warnings = []
    if spec.min_rows_ratio is not None and rows_before:
        ratio = rows_after / rows_before
        if ratio < spec.min_rows_ratio:
            raise QualityGateFailed(
                f'{spec.name}: the new table has {rows_after} rows, {ratio:.0%} of the {rows_before} rows in '
                f'{spec.table_name} (the minimum is {spec.min_rows_ratio:.0%}); the target is unchanged. '
                f'If the drop is expected, lower {spec.name}.min_rows_ratio (or set it to None).')
    empty = _all_null_columns(conn, spec, staging) if rows_after and spec.all_null_columns != 'ignore' else ()
    if empty:
        message = (f'{spec.name}: column(s) {", ".join(empty)} are NULL in all {rows_after} rows; '
                   'has the source renamed or dropped a field?')
        if spec.all_null_columns == 'fail':
            raise QualityGateFailed(message + ' The target is unchanged.')
        log.warning('%s', message)
        warnings.append(message)
    conn.commit()
    return GateReport(rows_before, rows_after, empty, tuple(warnings))


def _all_null_columns(conn: Connection, spec: DatasetPipelineSpec, staging: str) -> tuple[str, ...]:
    nullable = [c for c in spec.columns if not c.type.not_null]
    if not nullable:
        return ()
    # One probe per column that stops at its first non-NULL value: a column with values
    # costs a row or so, where counting them scanned the whole table (seconds at 1M rows).
    table = sql.Identifier(DEFAULT_SCHEMA, staging)
    probes = sql.SQL(', ').join(
        sql.SQL('EXISTS (SELECT 1 FROM {} WHERE {} IS NOT NULL)').format(table, sql.Identifier(c.name))
        for c in nullable)
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL('SELECT {}').format(probes))
        found = cursor.fetchone() or ()
    return tuple(c.name for c, has_values in zip(nullable, found) if not has_values)
