-- The run holding the claim is alive (a claim silent for STALE_CLAIM_MINUTES may be taken over).
UPDATE dupguard.migration_ledger SET heartbeat_at = now()
 WHERE migration_id = %(migration_id)s AND run_id = %(run_id)s
