-- The Breezeway database as the migration finds it (demo, tests, bench).
-- Six child tables without a unique natural key (the old ETL inserted duplicates),
-- task_tags already unique, plus the objects that must survive the migration:
-- a view, grants, an extra index, foreign keys and a trigger.
CREATE SCHEMA breezeway;
CREATE TABLE breezeway.properties (property_pk bigint PRIMARY KEY, name text, region_code text);
CREATE TABLE breezeway.tasks (task_pk bigint PRIMARY KEY, property_pk bigint REFERENCES breezeway.properties,
                              title text, region_code text);
CREATE TABLE breezeway.reservations (reservation_pk bigint PRIMARY KEY,
                                     property_pk bigint REFERENCES breezeway.properties, region_code text);

CREATE TABLE breezeway.property_photos (
    id bigserial PRIMARY KEY, property_pk bigint NOT NULL REFERENCES breezeway.properties,
    photo_id bigint, url text, caption text, region_code text, created_at timestamptz, updated_at timestamptz);
CREATE TABLE breezeway.task_requirements (
    id bigserial PRIMARY KEY, task_pk bigint NOT NULL REFERENCES breezeway.tasks,
    requirement_id bigint, name text, status text, region_code text, created_at timestamptz, updated_at timestamptz);
CREATE TABLE breezeway.task_comments (
    id bigserial PRIMARY KEY, task_pk bigint NOT NULL REFERENCES breezeway.tasks,
    comment_id bigint, body text, author text, region_code text, created_at timestamptz, updated_at timestamptz);
CREATE TABLE breezeway.task_assignments (
    id bigserial PRIMARY KEY, task_pk bigint NOT NULL REFERENCES breezeway.tasks,
    assignee_id bigint, role text, region_code text, created_at timestamptz, updated_at timestamptz);
CREATE TABLE breezeway.task_photos (
    id bigserial PRIMARY KEY, task_pk bigint NOT NULL REFERENCES breezeway.tasks,
    photo_id bigint, url text, region_code text, created_at timestamptz, updated_at timestamptz);
CREATE TABLE breezeway.reservation_guests (
    id bigserial PRIMARY KEY, reservation_pk bigint NOT NULL REFERENCES breezeway.reservations,
    guest_id bigint, name text, email text, region_code text, created_at timestamptz, updated_at timestamptz);

CREATE TABLE breezeway.task_tags (
    id bigserial PRIMARY KEY, task_pk bigint REFERENCES breezeway.tasks, tag_pk bigint, created_at timestamptz,
    CONSTRAINT task_tags_unique UNIQUE (task_pk, tag_pk));

-- what the rest of the database built on top of the child tables
CREATE INDEX task_requirements_region_idx ON breezeway.task_requirements (region_code);
CREATE VIEW breezeway.open_task_requirements AS
    SELECT r.task_pk, r.requirement_id, r.name, t.title
    FROM breezeway.task_requirements r JOIN breezeway.tasks t USING (task_pk)
    WHERE r.status IS DISTINCT FROM 'done';
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'breezeway_reader') THEN
        CREATE ROLE breezeway_reader NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA breezeway TO breezeway_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA breezeway TO breezeway_reader;
CREATE FUNCTION breezeway.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER task_comments_touch BEFORE UPDATE ON breezeway.task_comments
    FOR EACH ROW EXECUTE FUNCTION breezeway.touch_updated_at();
