"""Loading into PostgreSQL, and nothing else: connections, the catalog, the COPY format,
quality gates, views, and the load strategies (dataflow.load.strategies)."""
