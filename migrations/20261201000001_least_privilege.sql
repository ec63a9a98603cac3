-- Least privilege: the service no longer runs as the owner of the log.
--
-- Until now `aisc serve` ran as the role that owns `events` and `streams`, and an owner may
-- disable the triggers that keep the log append-only, rewrite history and recompute the hashes.
-- From here on there are three roles (README, "Deployment: the owner, the service, the auditor"):
--
--   the owner     whoever applies the migrations (`aisc migrate`); it owns every table and
--                 function below and is the only role that may alter them, disable their
--                 triggers or truncate them. Not created here.
--   aisc_service  NOLOGIN group role of the service; a deployer gives it login roles
--                 (`CREATE ROLE aisc_app LOGIN PASSWORD '…' IN ROLE aisc_service`) that run
--                 `aisc serve`. It reads the log and appends to it only through `append_stream`
--                 and `append_streams`, which run as the owner (SECURITY DEFINER): it cannot
--                 insert an event of its own making, nor move a stream's head. It writes its own
--                 tables (checkpoints, Idempotency-Key claims) and owns the read models.
--   aisc_auditor  NOLOGIN group role of auditors and reporting jobs: reads the log, the
--                 checkpoints and the read models; writes nothing.
--
-- Roles belong to the whole server, not to a database: several databases on one server share
-- aisc_service and aisc_auditor. So they are created only when missing (a concurrent migration
-- of another database may create them at the same moment), never altered or dropped here, and
-- every grant below is on this database's objects only. (A consequence to know: a login of
-- aisc_service may act as the service in every database of the server that uses these roles.)
--
-- Every grant is stated in one function, aisc_grant_privileges(), called at the end of this
-- migration and again after every `aisc migrate`: a role dropped and recreated, or a grant taken
-- away by hand, is put right by the next `aisc migrate`. A later migration that adds a table or a
-- function the service or the auditor uses replaces aisc_grant_privileges() with its grants added
-- (CREATE OR REPLACE), so that the function stays the one list of what each role may do.
--
-- The migration can run again where it already ran; it then changes nothing.

-- The roles, created when missing. The migrating role also becomes a member of aisc_service:
-- creating the read models' scratch schemas for the service, setting the service's default
-- privileges and handing read-model tables over to it all need that (a superuser is one already).
CREATE OR REPLACE FUNCTION aisc_ensure_roles() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    wanted record;
    -- PostgreSQL 16 separated the right to SET ROLE from membership.
    may_set text := CASE WHEN current_setting('server_version_num')::integer >= 160000 THEN 'SET' ELSE 'MEMBER' END;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('aisc_service', 'AISC Subsidy Back Office: the service (aisc serve); grant it to the service''s login roles'),
            ('aisc_auditor', 'AISC Subsidy Back Office: read-only access to the log and the read models')
        ) AS roles(name, purpose)
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = wanted.name);
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', wanted.name);
            EXECUTE format('COMMENT ON ROLE %I IS %L', wanted.name, wanted.purpose);
        EXCEPTION
            -- The migration of another database on this server created it at the same moment.
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role % does not exist and % may not create it (it lacks CREATEROLE): run `aisc migrate` once as a role with CREATEROLE, or have an administrator run: CREATE ROLE aisc_service NOLOGIN; CREATE ROLE aisc_auditor NOLOGIN; GRANT aisc_service TO %;',
                    wanted.name, current_user, quote_ident(current_user)
                    USING ERRCODE = 'insufficient_privilege';
        END;
    END LOOP;

    IF NOT (pg_catalog.pg_has_role(current_user, 'aisc_service', 'USAGE')
            AND pg_catalog.pg_has_role(current_user, 'aisc_service', may_set)) THEN
        BEGIN
            EXECUTE format('GRANT aisc_service TO %I', current_user);
        EXCEPTION
            WHEN unique_violation THEN
                NULL;
            WHEN insufficient_privilege OR invalid_grant_operation THEN
                RAISE EXCEPTION '% must be a member of role aisc_service (with INHERIT and SET) to migrate, and may not make itself one (%): have an administrator run: GRANT aisc_service TO %;',
                    current_user, SQLERRM, quote_ident(current_user)
                    USING ERRCODE = 'insufficient_privilege';
        END;
    END IF;
END
$$;

SELECT aisc_ensure_roles();

-- Appends run as the owner of the log, whoever calls them; the service gets EXECUTE on them
-- and no right to write `events` or `streams` itself. The search path is fixed so that nothing
-- a caller put in its own path can stand in for a table, function or operator used inside:
-- pg_catalog first, then public (where only the owner may create objects, see below), and the
-- caller's temporary schema last, where tables are never found before public's.
-- The triggers on `events` (append-only, the Idempotency-Key fence) then run as the owner too.
ALTER FUNCTION append_stream SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION append_streams SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;

-- The read models live in a schema of their own, owned by the owner, in which aisc_service may
-- create tables (the projection runner creates them at run time). Not in public: a role that
-- may create objects in public could plant a function or operator there that an owner's query,
-- or the append functions' search path, would pick up, and so run its code as the owner.
-- Queries name the schema; nobody needs it in a search path.
CREATE SCHEMA IF NOT EXISTS read_models;
COMMENT ON SCHEMA read_models IS 'AISC Subsidy Back Office: read models, rebuilt from the log by the service (aisc_service owns the tables)';

-- The read models the projections created in public so far move there (the checkpoints stay
-- valid); aisc_grant_privileges() then hands them to aisc_service.
DO $$
DECLARE
    read_model text;
BEGIN
    FOREACH read_model IN ARRAY ARRAY['audit_trail', 'applications_view', 'budget_view', 'capacity_view',
                                      'usage_view', 'batches_view'] LOOP
        IF to_regclass(format('public.%I', read_model)) IS NOT NULL
           AND to_regclass(format('read_models.%I', read_model)) IS NULL THEN
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA read_models', read_model);
        END IF;
    END LOOP;
END
$$;

-- A rebuild replays the log into a scratch schema (`rebuild_<projection>`) and an `as_of` query
-- into another (`as_of_<position>_<n>`). The service may not create schemas (CREATE on the
-- database would let it create one named after another role, which that role's default search
-- path, "$user", public, reads first), so this function, running as the owner, creates them for
-- it, owned by aisc_service, under those two prefixes only. It drops a previous schema of the
-- same name first (a rebuild that crashed leaves one behind). The service drops its scratch
-- schemas itself, as their owner.
CREATE OR REPLACE FUNCTION create_read_model_scratch_schema(p_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_name IS NULL OR p_name !~ '^(rebuild|as_of)_[a-z0-9_]+$' OR length(p_name) > 63 THEN
        RAISE EXCEPTION 'not a scratch schema of the read models: % (rebuild_… or as_of_…: lower-case letters, digits and _, at most 63)', p_name
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

-- Every grant, stated in full each time (REVOKE, then GRANT), so that the roles have exactly
-- these rights whatever was granted before.
CREATE OR REPLACE FUNCTION aisc_grant_privileges() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    foreign_owned regclass;
BEGIN
    -- One run at a time on this database: two GRANTs on one object at once may fail with
    -- "tuple concurrently updated" (`aisc migrate` and a service starting as the owner).
    PERFORM pg_catalog.pg_advisory_xact_lock(7340932617450219831);
    PERFORM aisc_ensure_roles();

    -- Only the owner creates objects in public: the append functions look names up there.
    -- PostgreSQL 15 creates public that way; a database from an older server let every role
    -- create there, and only the owner of schema public can take that back.
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    IF has_schema_privilege('aisc_service', 'public', 'CREATE')
       OR has_schema_privilege('aisc_auditor', 'public', 'CREATE') THEN
        RAISE EXCEPTION 'aisc_service or aisc_auditor may create objects in schema public, so it could plant objects the log''s functions would use: have the owner of schema public run REVOKE CREATE ON SCHEMA public FROM PUBLIC (and from those roles), then run `aisc migrate` again'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    GRANT USAGE ON SCHEMA public TO aisc_service, aisc_auditor;

    -- The log: both roles read it; nobody but the owner writes, alters or truncates it. The
    -- service appends through the two functions, which run as the owner.
    REVOKE ALL ON TABLE events, streams FROM PUBLIC, aisc_service, aisc_auditor;
    GRANT SELECT ON TABLE events, streams TO aisc_service, aisc_auditor;
    REVOKE ALL ON FUNCTION append_stream, append_streams FROM PUBLIC, aisc_service, aisc_auditor;
    GRANT EXECUTE ON FUNCTION append_stream, append_streams TO aisc_service;

    -- Functions nobody but the owner calls (triggers run them without EXECUTE being checked).
    REVOKE ALL ON FUNCTION events_refuse_change, events_check_idempotency_claim, announce_token_change,
                           aisc_ensure_roles, aisc_grant_privileges
        FROM PUBLIC, aisc_service, aisc_auditor;
    -- Future functions of the owner are not executable by every role unless granted here.
    ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

    -- The service's own tables, with what the code does to them and no more.
    REVOKE ALL ON TABLE projection_checkpoints, idempotent_requests, api_tokens
        FROM PUBLIC, aisc_service, aisc_auditor;
    -- The projection runner moves checkpoints, records a rebuilt read model (INSERT … ON
    -- CONFLICT DO UPDATE) and asks for rebuilds; nothing is ever deleted.
    GRANT SELECT, INSERT, UPDATE ON TABLE projection_checkpoints TO aisc_service;
    GRANT SELECT ON TABLE projection_checkpoints TO aisc_auditor;
    -- Idempotency-Key claims, their leases and the responses kept (SELECT … FOR UPDATE needs
    -- UPDATE); released claims are updated, never deleted.
    GRANT SELECT, INSERT, UPDATE ON TABLE idempotent_requests TO aisc_service;
    -- The service verifies bearer tokens; issuing and revoking them is the owner's
    -- (`aisc tokens`), so a service taken over cannot mint itself a token.
    GRANT SELECT ON TABLE api_tokens TO aisc_service;
    -- The migrations applied: the service refuses to start on a schema older than its code.
    -- (sqlx creates the table; a database migrated by other means may not have it.)
    IF to_regclass('public._sqlx_migrations') IS NOT NULL THEN
        REVOKE ALL ON TABLE public._sqlx_migrations FROM PUBLIC, aisc_service, aisc_auditor;
        GRANT SELECT ON TABLE public._sqlx_migrations TO aisc_service, aisc_auditor;
    END IF;

    -- The read models: the service creates, fills, rebuilds and drops them; the auditor reads.
    REVOKE ALL ON SCHEMA read_models FROM PUBLIC;
    GRANT USAGE, CREATE ON SCHEMA read_models TO aisc_service;
    GRANT USAGE ON SCHEMA read_models TO aisc_auditor;
    -- Tables there belong to aisc_service, so that any login of the service can rebuild them:
    -- those moved out of public above, or created by an owner's projection before this.
    FOR foreign_owned IN
        SELECT c.oid::regclass FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'read_models'::regnamespace AND c.relkind IN ('r', 'p')
           AND c.relowner <> 'aisc_service'::regrole
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO aisc_service', foreign_owned);
    END LOOP;
    GRANT SELECT ON ALL TABLES IN SCHEMA read_models TO aisc_auditor;
    -- And the tables the service creates from now on (in a scratch schema, then moved into
    -- read_models) are readable by the auditor as soon as they exist.
    ALTER DEFAULT PRIVILEGES FOR ROLE aisc_service GRANT SELECT ON TABLES TO aisc_auditor;
    REVOKE ALL ON FUNCTION create_read_model_scratch_schema FROM PUBLIC, aisc_service, aisc_auditor;
    GRANT EXECUTE ON FUNCTION create_read_model_scratch_schema TO aisc_service;
END
$$;

SELECT aisc_grant_privileges();
