-- Idempotency-Key claims that outlive neither their request nor their process.
--
-- Until now a claim (status 0) lasted until its request kept a response or released it, so a
-- process killed in between, or a database that failed in between, left the key answering
-- 409 "still running" for ever.
--
-- A running claim is now a lease: its request pushes `lease_until` forward while it runs, and
-- a retry may take the claim over once the lease has run out, which bumps `generation`. The
-- events of a command run under a claim carry ids derived from it (see
-- adapters/src/event_ids.rs):
--
--   bytes 0-7   `event_tag`, random per claim (the UUID version nibble is 8)
--   bytes 8-9   the UUID variant bits (10) and the claim's generation modulo 2^14
--   bytes 10-15 a counter within the execution
--
-- so the retry that takes a claim over finds, by a range scan of the event id index, the
-- events of an execution that committed, and answers its outcome instead of running it again;
-- and the trigger below refuses the events of an execution whose claim was taken over, so an
-- execution that was only slow, or a transaction that commits after its process died, can
-- never add a second set of events.
--
-- Claims recorded before this migration have an expired lease: the keys they left stuck are
-- free for a retry.

ALTER TABLE idempotent_requests
    ADD COLUMN event_tag   bytea CONSTRAINT idempotent_requests_event_tag_unique UNIQUE
                                 CONSTRAINT idempotent_requests_event_tag_length CHECK (length(event_tag) = 8),
    ADD COLUMN generation  integer     NOT NULL DEFAULT 1,
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT '-infinity';

-- Refuses an event whose id belongs to a claim that is no longer running under the
-- generation that wrote it. The claim's row is locked (FOR SHARE) until the append commits,
-- so a takeover waits for the append to end and then sees its events.
CREATE FUNCTION events_check_idempotency_claim() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    raw     bytea   := uuid_send(NEW.event_id);
    written integer := ((get_byte(raw, 8) & 63) << 8) | get_byte(raw, 9);
BEGIN
    PERFORM 1 FROM idempotent_requests r
      WHERE r.event_tag = substr(raw, 1, 8)
        AND r.generation % 16384 = written
        AND r.status = 0
        FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % belongs to an Idempotency-Key claim that a retry has taken over', NEW.event_id
            USING ERRCODE = 'AE005', DETAIL = NEW.event_id::text;
    END IF;
    RETURN NEW;
END
$$;

-- Only ids of version 8 (the claimed ones) pay for the check; the condition is evaluated
-- without calling the function.
CREATE TRIGGER events_fence_idempotency_claims
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (get_byte(uuid_send(NEW.event_id), 6) >> 4 = 8)
    EXECUTE FUNCTION events_check_idempotency_claim();
