-- The append-only event log, its stream heads, and the append function.
--
-- Global positions: position = transaction id (xid8) * 2^20 + the event's ordinal within its
-- transaction. A reader of $all only hands out positions below
-- pg_snapshot_xmin(pg_current_snapshot()) * 2^20: every transaction with a lower id has
-- finished, and every transaction that starts later gets a higher id, so nothing can ever
-- commit below what a reader has already passed. Appends stay concurrent: no global lock.

CREATE TABLE streams (
    stream_id      text   PRIMARY KEY,
    -- Version, position and hash of the stream's last event.
    version        bigint NOT NULL,
    last_position  bigint NOT NULL,
    last_hash      bytea  NOT NULL
);

CREATE TABLE events (
    global_position bigint      PRIMARY KEY,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version >= 0),
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    -- sha256(previous hash of the stream || content digest || version || position)
    hash            bytea       NOT NULL,
    CONSTRAINT events_event_id_unique UNIQUE (event_id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

-- Append-only, enforced by the database itself.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'AE004';
END
$$;

CREATE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Appends events to one or more streams in one transaction (the calling statement's).
-- Streams arrive sorted by id so that concurrent multi-stream appends lock in one order.
-- Expected kinds: 0 any, 1 no stream, 2 stream exists, 3 exact version.
-- Errors: AE001 wrong expected version (DETAIL: stream, expected kind, expected, actual),
--         AE002 event id reused with other content, AE003 retry (a stream's last event has a
--         higher position than this transaction can write; a new transaction will not).
--         A unique violation on streams_pkey means another transaction created the same
--         stream at the same moment: the caller retries and then sees the stream.
CREATE FUNCTION append_events(
    p_streams           text[],
    p_expected_kinds    smallint[],
    p_expected_versions bigint[],
    p_counts            integer[],
    p_event_ids         uuid[],
    p_event_types       text[],
    p_schema_versions   integer[],
    p_data              jsonb[],
    p_metadata          jsonb[],
    p_recorded_at       timestamptz[],
    p_digests           bytea[]
) RETURNS TABLE (stream_id text, first_version bigint, last_version bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n_streams   integer := coalesce(array_length(p_streams, 1), 0);
    versions    bigint[] := array_fill(-1::bigint, ARRAY[n_streams]);
    head_pos    bigint[] := array_fill(0::bigint, ARRAY[n_streams]);
    hashes      bytea[] := array_fill('\x'::bytea, ARRAY[n_streams]);
    replayed    boolean[] := array_fill(false, ARRAY[n_streams]);
    r_first     bigint[] := array_fill(0::bigint, ARRAY[n_streams]);
    r_last      bigint[] := array_fill(0::bigint, ARRAY[n_streams]);
    n_replayed  integer := 0;
    g           integer;
    i           integer;
    offs        integer := 0;
    exists_now  boolean;
    matches     boolean;
    ex          record;
    base        bigint;
    ordinal     bigint := 0;
    pos         bigint;
    ver         bigint;
    h           bytea;
BEGIN
    -- Lock each existing stream head; check idempotency and the expected version.
    FOR g IN 1 .. n_streams LOOP
        SELECT s.version, s.last_position, s.last_hash INTO ver, pos, h
          FROM streams s WHERE s.stream_id = p_streams[g] FOR UPDATE;
        exists_now := FOUND;
        IF exists_now THEN
            versions[g] := ver;
            head_pos[g] := pos;
            hashes[g] := h;
        END IF;
        matches := CASE p_expected_kinds[g]
                       WHEN 1 THEN NOT exists_now
                       WHEN 2 THEN exists_now
                       WHEN 3 THEN exists_now AND versions[g] = p_expected_versions[g]
                       ELSE true END;
        -- A replay is only possible in an existing stream, and only looked for where the
        -- expectation alone does not settle it (a matching exact version is a new append).
        IF exists_now AND (NOT matches OR p_expected_kinds[g] IN (0, 2)) THEN
            SELECT e.stream_id, e.stream_version INTO ex
              FROM events e WHERE e.event_id = p_event_ids[offs + 1];
            IF FOUND THEN
                FOR i IN 1 .. p_counts[g] LOOP
                    PERFORM 1 FROM events e
                      WHERE e.event_id = p_event_ids[offs + i]
                        AND e.stream_id = p_streams[g]
                        AND e.stream_version = ex.stream_version + i - 1
                        AND e.event_type = p_event_types[offs + i]
                        AND e.schema_version = p_schema_versions[offs + i]
                        AND e.data = p_data[offs + i]
                        AND e.metadata = p_metadata[offs + i];
                    IF NOT FOUND THEN
                        RAISE EXCEPTION 'event id % is already recorded with other content', p_event_ids[offs + i]
                            USING ERRCODE = 'AE002', DETAIL = p_event_ids[offs + i]::text;
                    END IF;
                END LOOP;
                SELECT e.global_position INTO pos FROM events e
                  WHERE e.event_id = p_event_ids[offs + p_counts[g]];
                replayed[g] := true;
                n_replayed  := n_replayed + 1;
                r_first[g]  := ex.stream_version;
                r_last[g]   := ex.stream_version + p_counts[g] - 1;
                head_pos[g] := pos;
                matches     := true;
            END IF;
        END IF;
        IF NOT matches THEN
            RAISE EXCEPTION 'stream % is not at the expected version', p_streams[g]
                USING ERRCODE = 'AE001',
                      DETAIL = json_build_object('stream', p_streams[g],
                                                 'expected_kind', p_expected_kinds[g],
                                                 'expected', p_expected_versions[g],
                                                 'actual', versions[g])::text;
        END IF;
        offs := offs + p_counts[g];
    END LOOP;

    IF n_replayed > 0 AND n_replayed < n_streams THEN
        RAISE EXCEPTION 'an append reuses event ids already recorded by a different append'
            USING ERRCODE = 'AE002', DETAIL = '';
    END IF;

    IF n_replayed = 0 THEN
        base := pg_current_xact_id()::text::bigint * 1048576;
        offs := 0;
        FOR g IN 1 .. n_streams LOOP
            IF head_pos[g] >= base THEN
                RAISE EXCEPTION 'stream % was written by a later transaction; retry', p_streams[g]
                    USING ERRCODE = 'AE003';
            END IF;
            ver := versions[g];
            h := hashes[g];
            r_first[g] := ver + 1;
            FOR i IN 1 .. p_counts[g] LOOP
                ver := ver + 1;
                pos := base + ordinal;
                ordinal := ordinal + 1;
                h := sha256(h || p_digests[offs + i] || int8send(ver) || int8send(pos));
                INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type,
                                    schema_version, data, metadata, recorded_at, hash)
                     VALUES (pos, p_streams[g], ver, p_event_ids[offs + i], p_event_types[offs + i],
                             p_schema_versions[offs + i], p_data[offs + i], p_metadata[offs + i],
                             p_recorded_at[offs + i], h);
            END LOOP;
            IF versions[g] < 0 THEN
                INSERT INTO streams (stream_id, version, last_position, last_hash) VALUES (p_streams[g], ver, pos, h);
            ELSE
                UPDATE streams s SET version = ver, last_position = pos, last_hash = h
                 WHERE s.stream_id = p_streams[g];
            END IF;
            r_last[g] := ver;
            head_pos[g] := pos;
            offs := offs + p_counts[g];
        END LOOP;
    END IF;

    FOR g IN 1 .. n_streams LOOP
        stream_id := p_streams[g];
        first_version := r_first[g];
        last_version := r_last[g];
        last_position := head_pos[g];
        RETURN NEXT;
    END LOOP;
END
$$;
