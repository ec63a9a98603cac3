-- Copying a log into a new generation (`aisc privacy reencrypt-log`) writes the events of
-- Idempotency-Key claims again, with their ids (UUID version 8, see
-- 20261126000001_idempotency_leases.sql). The new generation's database holds no claims, so
-- the fence below would refuse every one of them (AE005).
--
-- The copy announces itself with the transaction-local setting `aisc.copying_log_generation`
-- = 'on', and the fence lets its events through, but only when the login of the session is a
-- member of the role that owns the log: any role can set a custom setting, so the setting
-- alone would let the service skip the fence. `session_user` is the login (the append
-- functions run as the owner, so `current_user` would always pass).
--
-- CREATE OR REPLACE keeps the function's owner and privileges (nobody but the owner may call
-- it; the trigger calls it without EXECUTE being checked).
CREATE OR REPLACE FUNCTION events_check_idempotency_claim() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    raw     bytea   := uuid_send(NEW.event_id);
    written integer := ((get_byte(raw, 8) & 63) << 8) | get_byte(raw, 9);
BEGIN
    IF current_setting('aisc.copying_log_generation', true) = 'on'
       AND pg_has_role(session_user,
                       (SELECT relowner FROM pg_catalog.pg_class WHERE oid = 'public.events'::regclass),
                       'MEMBER') THEN
        RETURN NEW;
    END IF;
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
