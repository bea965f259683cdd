-- The keepers of the dedup pass (select_keepers.sql), in one snapshot, into a transient table
-- (UNLOGGED, dropped after the pass) that the delete batches or the copy-swap join.
CREATE UNLOGGED TABLE {keepers} AS
{select_keepers}
