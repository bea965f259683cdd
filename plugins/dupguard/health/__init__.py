"""The daily health check of every maintained system (``dedup_health_daily``).

| module | what |
|---|---|
| ``config`` | the check's own facts (telemetry window, statement timeout, shared positions params) |
| ``checks`` | one check per system, each reusing that system's gate spec and figures |
| ``tasks`` | the Airflow adapter: a system not set up yet becomes a skipped task |
"""
