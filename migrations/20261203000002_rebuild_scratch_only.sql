-- The KPI dashboard's `as_of` is read from the history its projection keeps, no longer replayed
-- into an `as_of_…` scratch schema: only rebuilds make scratch schemas now.
CREATE OR REPLACE FUNCTION create_read_model_scratch_schema(p_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_name IS NULL OR p_name !~ '^rebuild_[a-z0-9_]+$' OR length(p_name) > 63 THEN
        RAISE EXCEPTION 'not a scratch schema of the read models: % (rebuild_…: lower-case letters, digits and _, at most 63)', p_name
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = p_name) THEN
        RAISE EXCEPTION 'scratch schema % would be named like a role, whose default search path would read it', p_name
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', p_name);
    EXECUTE format('CREATE SCHEMA %I AUTHORIZATION aisc_service', p_name);
END
$$;
