-- The migration's ledger row ({lock}: FOR UPDATE when the caller is about to change it).
SELECT * FROM dupguard.migration_ledger WHERE migration_id = %(migration_id)s {lock}
