"""Unified prediction-market positions in ClickHouse: exact FIFO rebuild, gated publish.

The table ``pm_trade_fifo_roi_v3_mat_unified`` holds one row per bought lot (the buy fills
of one ``tx_hash`` for one wallet/condition/outcome) with its FIFO-matched sells. Resolved
rows never change; the open (unresolved) part is rebuilt from the fills every six hours.

* :mod:`.config` - tables, the lot key, the unified columns (once, with types), thresholds;
* :mod:`.tables` - :class:`~.tables.Tables`, identifier quoting, SQL rendering, table shape;
* :mod:`.mutations` - issue a mutation and wait for exactly it, kill stuck ones by id;
* :mod:`.build` - preflight and the exact-FIFO build into the staging table;
* :mod:`.gates` - the staging, health and dedupe gates (specs as data);
* :mod:`.publish` - publish the open part, and roll it back;
* :mod:`.dedupe` - repair duplicate lot keys one wallet range at a time;
* :mod:`.partitioning` - move an unpartitioned table to the open/resolved partitions, online;
* :mod:`.tasks` - the DAGs' task bodies (the only module that knows Airflow).

The SQL lives in ``include/sql/positions/``; docs/positions.md has the runbook.
"""
