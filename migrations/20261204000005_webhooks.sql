-- Notifications to webhooks (`/api/v1/webhooks`): the destinations administrators register,
-- the notifications recorded once each (from the log, or from the clock), and one delivery per
-- notification and webhook, retried until delivered or given up.

CREATE TABLE webhooks (
    webhook_id     uuid        PRIMARY KEY,
    url            text        NOT NULL,
    -- The HMAC key of the signatures; never answered by the API.
    secret         text        NOT NULL,
    event_kinds    text[]      NOT NULL,
    active         boolean     NOT NULL DEFAULT true,
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz,
    -- The log's settled end when registered (the last position below the oldest running
    -- transaction's): events up to it are not notified to this webhook, so a replay of the
    -- log never sends it the past.
    from_position  bigint      NOT NULL
);

CREATE TABLE webhook_notifications (
    notification_id uuid        PRIMARY KEY,
    -- Order of recording: deliveries about one subject go out in this order.
    sequence        bigserial   NOT NULL UNIQUE,
    kind            text        NOT NULL,
    -- `application:<id>` or `batch:<id>`: what the notification is about.
    subject         text        NOT NULL,
    -- The business date the event occurred on, or the date that is due.
    occurred_on     date        NOT NULL,
    -- The event a notification of the log comes from (none for one of the clock).
    source_event_id uuid        UNIQUE,
    -- The figures of the body, without the delivery id.
    payload         jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
-- A notification of the clock is recorded once per kind, subject and due date.
CREATE UNIQUE INDEX webhook_notifications_once_per_due_date
    ON webhook_notifications (kind, subject, occurred_on) WHERE source_event_id IS NULL;

CREATE TABLE webhook_deliveries (
    delivery_id          uuid        PRIMARY KEY,
    webhook_id           uuid        NOT NULL REFERENCES webhooks (webhook_id),
    notification_id      uuid        NOT NULL REFERENCES webhook_notifications (notification_id),
    -- Copied from the notification: the queue's order is read from the deliveries alone.
    subject              text        NOT NULL,
    sequence             bigint      NOT NULL,
    status               text        NOT NULL DEFAULT 'pending'
                                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts             integer     NOT NULL DEFAULT 0,
    -- When it may be tried next; a claimed attempt moves it past the attempt's time-out.
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    last_response_status integer,
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    delivered_at         timestamptz,
    UNIQUE (webhook_id, notification_id)
);
-- The queue: pending deliveries by webhook and subject, in order.
CREATE INDEX webhook_deliveries_pending
    ON webhook_deliveries (webhook_id, subject, sequence) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- The listing per webhook, newest first.
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, sequence DESC);

-- The grants, restated with the webhooks' tables added to those of the web pages' sessions and
-- the data subjects' keys (see 20261201000001_least_privilege.sql).
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
    REVOKE ALL ON TABLE projection_checkpoints, idempotent_requests, api_tokens, ui_sessions, data_subject_keys
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
    -- Sessions of the web pages: opened at sign-in, read on every page, closed at sign-out or
    -- swept when expired.
    GRANT SELECT, INSERT, DELETE ON TABLE ui_sessions TO aisc_service;
    -- Keys of data subjects: created with their first personal field, read to seal and open,
    -- updated to erase one (its key is overwritten with NULL) or to wrap every key under a new
    -- key-encryption key. Never deleted: the row records the erasure. The auditor reads no key.
    GRANT SELECT, INSERT, UPDATE ON TABLE data_subject_keys TO aisc_service;
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

    -- Webhooks: administrators register and deactivate them through the service (never
    -- deleted: their deliveries stay listed); notifications are recorded and never changed;
    -- deliveries are recorded, claimed and updated by the service's worker. The auditor reads
    -- none of them: they hold the webhooks' secrets.
    REVOKE ALL ON TABLE webhooks, webhook_notifications, webhook_deliveries
        FROM PUBLIC, aisc_service, aisc_auditor;
    GRANT SELECT, INSERT, UPDATE ON TABLE webhooks TO aisc_service;
    GRANT SELECT, INSERT ON TABLE webhook_notifications TO aisc_service;
    GRANT SELECT, INSERT, UPDATE ON TABLE webhook_deliveries TO aisc_service;
    REVOKE ALL ON SEQUENCE webhook_notifications_sequence_seq FROM PUBLIC, aisc_service, aisc_auditor;
    GRANT USAGE ON SEQUENCE webhook_notifications_sequence_seq TO aisc_service;
END
$$;

SELECT aisc_grant_privileges();
