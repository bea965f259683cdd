-- Unpartitioned table: delete the open (unresolved) part with a mutation. The run token
-- makes the mutation's command unique, so the DAG finds and waits on its own mutation id.
ALTER TABLE {unified}
DELETE WHERE resolved_at IS NULL AND {run_token:String} != ''
