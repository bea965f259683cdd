"""dupguard: duplicate-row maintenance DAGs with data-quality gates and failure alerts.

DAG files stay thin; the logic lives in this package and the SQL in ``include/sql``.
"""
