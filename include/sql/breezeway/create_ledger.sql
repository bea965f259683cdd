-- dupguard's own objects in the migrated database: the migration ledger and the
-- change-log used while a table is compacted (reclaim step).
CREATE SCHEMA IF NOT EXISTS dupguard;
CREATE TABLE IF NOT EXISTS dupguard.migration_ledger (
    migration_id text PRIMARY KEY,
    status       text NOT NULL,            -- running | complete | rolling_back | rolled_back
    run_id       text NOT NULL,            -- the Airflow run that holds the claim
    dag_id       text NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    steps        jsonb NOT NULL DEFAULT '{}'::jsonb,   -- step -> when it last completed, and its figures
    history      jsonb NOT NULL DEFAULT '[]'::jsonb    -- claims, takeovers, completions
);
CREATE TABLE IF NOT EXISTS dupguard.bw_reclaim_log (
    table_name text NOT NULL,
    row_id     bigint NOT NULL
);
CREATE OR REPLACE FUNCTION dupguard.bw_reclaim_log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO dupguard.bw_reclaim_log VALUES (TG_TABLE_NAME, OLD.id);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO dupguard.bw_reclaim_log VALUES (TG_TABLE_NAME, NEW.id);
    END IF;
    RETURN NULL;
END $$;
