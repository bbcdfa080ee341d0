"""The task of a view pipeline run: create (or replace) the view of the run's interval."""

import logging

from dataflow import views
from dataflow.hooks import datasets_db

log = logging.getLogger(__name__)


def create_view(spec, context):
    logical_date = views.logical_date_of(context)
    where = views.render_where_clause(spec, views.template_context(
        logical_date, context.get('data_interval_start'), context.get('data_interval_end'),
        params=spec.params, macros=context.get('macros'),
    ))
    name = views.view_name_for(spec, logical_date)
    conn = datasets_db.connect(spec.dataset.target_db)
    try:
        rows = views.create_view(conn, spec, name, where)
    finally:
        conn.close()
    log.info('%s: view %s over %s has %d rows; where %s', spec.name, name, spec.dataset.table_name, rows, where)
    return {'view': name, 'rows': rows, 'where': where}
