-- Telemetry ingestion schema (the shape of the production database the DAGs run against).
-- Used by the demo and the tests; idempotent. No primary keys, nothing NOT NULL, non-unique id indexes.
DO $$
BEGIN
    IF to_regtype('micromegas_property') IS NULL THEN
        CREATE TYPE micromegas_property AS (key TEXT, value TEXT);
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS processes(
    process_id UUID, exe VARCHAR(255), username VARCHAR(255), realname VARCHAR(255),
    computer VARCHAR(255), distro VARCHAR(255), cpu_brand VARCHAR(255), tsc_frequency BIGINT,
    start_time TIMESTAMPTZ, start_ticks BIGINT, insert_time TIMESTAMPTZ, parent_process_id UUID,
    properties micromegas_property[]);

CREATE TABLE IF NOT EXISTS streams(
    stream_id UUID, process_id UUID, dependencies_metadata BYTEA, objects_metadata BYTEA,
    tags TEXT[], properties micromegas_property[], insert_time TIMESTAMPTZ);

CREATE TABLE IF NOT EXISTS blocks(
    block_id UUID, stream_id UUID, process_id UUID, begin_time TIMESTAMPTZ,
    begin_ticks BIGINT, end_time TIMESTAMPTZ, end_ticks BIGINT, nb_objects INT, object_offset BIGINT,
    payload_size BIGINT, insert_time TIMESTAMPTZ);

CREATE INDEX IF NOT EXISTS process_id ON processes(process_id);
CREATE INDEX IF NOT EXISTS process_insert_time ON processes(insert_time);
CREATE INDEX IF NOT EXISTS stream_id ON streams(stream_id);
CREATE INDEX IF NOT EXISTS stream_insert_time ON streams(insert_time);
CREATE INDEX IF NOT EXISTS stream_process_id ON streams(process_id);
CREATE INDEX IF NOT EXISTS block_id ON blocks(block_id);
CREATE INDEX IF NOT EXISTS block_insert_time ON blocks(insert_time);
CREATE INDEX IF NOT EXISTS block_stream_id ON blocks(stream_id);
