"""The layer every maintained system shares: settings, connections through the providers'
hooks, the DAG kit, the quality gate, the alert notifier and PostgreSQL mechanics (``pg``)."""
