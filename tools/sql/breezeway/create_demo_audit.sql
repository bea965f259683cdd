-- Optional audit trigger (demo and tests): proves the migration's own row moves do not
-- fire user triggers (they would write one audit row per removed duplicate).
CREATE TABLE breezeway.audit_log (id bigserial PRIMARY KEY, table_name text, op text, row_id bigint,
                                  at timestamptz DEFAULT now());
CREATE FUNCTION breezeway.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO breezeway.audit_log (table_name, op, row_id)
    VALUES (TG_TABLE_NAME, TG_OP, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
    RETURN NULL;
END $$;
CREATE TRIGGER property_photos_audit AFTER INSERT OR DELETE ON breezeway.property_photos
    FOR EACH ROW EXECUTE FUNCTION breezeway.audit_row();
