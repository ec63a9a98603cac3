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

-- Appends events to one stream, within the calling transaction. Numbers the events from
-- ordinal p_first_ordinal of this transaction (so several streams can share one transaction).
-- Expected kinds: 0 any, 1 no stream, 2 stream exists, 3 exact version.
-- Errors: AE001 wrong expected version (DETAIL: JSON with stream, expected kind, expected,
--         actual); AE002 an event id recorded with other content (DETAIL: the id); AE003 the
--         stream's last event has a higher position than this transaction can write (it raced
--         a transaction with a higher id for the stream): retry in a new transaction. A unique
--         violation on streams_pkey means another transaction created the stream at the same
--         moment: retry, and the stream will be seen.
-- A replay (the same event ids, same content, already in this stream) writes nothing and
-- returns the first append's result with replayed = true.
CREATE FUNCTION append_stream(
    p_stream          text,
    p_expected_kind   smallint,
    p_expected        bigint,
    p_first_ordinal   bigint,
    p_event_ids       uuid[],
    p_event_types     text[],
    p_schema_versions integer[],
    p_data            jsonb[],
    p_metadata        jsonb[],
    p_recorded_at     timestamptz,
    p_digests         bytea[],
    OUT first_version bigint,
    OUT last_version  bigint,
    OUT last_position bigint,
    OUT replayed      boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := coalesce(array_length(p_event_ids, 1), 0);
    head_ver   bigint := -1;
    head_pos   bigint := 0;
    h          bytea := '\x';
    exists_now boolean;
    matches    boolean;
    replay_at  bigint;
    base       bigint;
    pos        bigint;
    ver        bigint;
    i          integer;
BEGIN
    SELECT s.version, s.last_position, s.last_hash INTO head_ver, head_pos, h
      FROM streams s WHERE s.stream_id = p_stream FOR UPDATE;
    exists_now := FOUND;
    IF NOT exists_now THEN
        head_ver := -1; head_pos := 0; h := '\x';
    END IF;
    matches := CASE p_expected_kind
                   WHEN 1 THEN NOT exists_now
                   WHEN 2 THEN exists_now
                   WHEN 3 THEN exists_now AND head_ver = p_expected
                   ELSE true END;
    replayed := false;
    -- A replay is only possible in an existing stream, and only looked for where the
    -- expectation alone does not settle it (a matching exact version is a new append).
    IF exists_now AND (NOT matches OR p_expected_kind IN (0, 2)) THEN
        SELECT e.stream_version INTO replay_at FROM events e
         WHERE e.event_id = p_event_ids[1] AND e.stream_id = p_stream;
        IF FOUND THEN
            FOR i IN 1 .. n LOOP
                PERFORM 1 FROM events e
                  WHERE e.event_id = p_event_ids[i]
                    AND e.stream_id = p_stream
                    AND e.stream_version = replay_at + i - 1
                    AND e.event_type = p_event_types[i]
                    AND e.schema_version = p_schema_versions[i]
                    AND e.data = p_data[i]
                    AND e.metadata = p_metadata[i];
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'event id % is already recorded with other content', p_event_ids[i]
                        USING ERRCODE = 'AE002', DETAIL = p_event_ids[i]::text;
                END IF;
            END LOOP;
            SELECT e.global_position INTO last_position FROM events e WHERE e.event_id = p_event_ids[n];
            first_version := replay_at;
            last_version := replay_at + n - 1;
            replayed := true;
            RETURN;
        END IF;
    END IF;
    IF NOT matches THEN
        RAISE EXCEPTION 'stream % is not at the expected version', p_stream
            USING ERRCODE = 'AE001',
                  DETAIL = json_build_object('stream', p_stream, 'expected_kind', p_expected_kind,
                                             'expected', p_expected, 'actual', head_ver)::text;
    END IF;

    -- The transaction id is taken only now, after the head was read, so it is higher than
    -- the id of whoever wrote that head, unless the two raced for the lock (then retry).
    base := pg_current_xact_id()::text::bigint * 1048576;
    IF head_pos >= base THEN
        RAISE EXCEPTION 'stream % was written by a later transaction; retry', p_stream USING ERRCODE = 'AE003';
    END IF;
    ver := head_ver;
    FOR i IN 1 .. n LOOP
        ver := ver + 1;
        pos := base + p_first_ordinal + i - 1;
        h := sha256(h || p_digests[i] || int8send(ver) || int8send(pos));
        INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type,
                            schema_version, data, metadata, recorded_at, hash)
             VALUES (pos, p_stream, ver, p_event_ids[i], p_event_types[i], p_schema_versions[i],
                     p_data[i], p_metadata[i], p_recorded_at, h);
    END LOOP;
    IF exists_now THEN
        UPDATE streams s SET version = ver, last_position = pos, last_hash = h WHERE s.stream_id = p_stream;
    ELSE
        INSERT INTO streams (stream_id, version, last_position, last_hash) VALUES (p_stream, ver, pos, h);
    END IF;
    first_version := head_ver + 1;
    last_version := ver;
    last_position := pos;
END
$$;

-- Appends to several streams in one transaction, all or nothing. The streams arrive sorted
-- by id so that concurrent multi-stream appends lock their heads in one order. The events of
-- all streams are concatenated; p_counts says how many belong to each stream.
CREATE FUNCTION append_streams(
    p_streams           text[],
    p_expected_kinds    smallint[],
    p_expected_versions bigint[],
    p_counts            integer[],
    p_event_ids         uuid[],
    p_event_types       text[],
    p_schema_versions   integer[],
    p_data              jsonb[],
    p_metadata          jsonb[],
    p_recorded_at       timestamptz,
    p_digests           bytea[]
) RETURNS TABLE (first_version bigint, last_version bigint, last_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n_streams  integer := coalesce(array_length(p_streams, 1), 0);
    n_replayed integer := 0;
    offs       integer := 0;
    g          integer;
    part       record;
BEGIN
    FOR g IN 1 .. n_streams LOOP
        part := append_stream(p_streams[g], p_expected_kinds[g], p_expected_versions[g], offs,
                              p_event_ids[offs + 1 : offs + p_counts[g]],
                              p_event_types[offs + 1 : offs + p_counts[g]],
                              p_schema_versions[offs + 1 : offs + p_counts[g]],
                              p_data[offs + 1 : offs + p_counts[g]],
                              p_metadata[offs + 1 : offs + p_counts[g]],
                              p_recorded_at,
                              p_digests[offs + 1 : offs + p_counts[g]]);
        IF part.replayed THEN
            n_replayed := n_replayed + 1;
        END IF;
        first_version := part.first_version;
        last_version := part.last_version;
        last_position := part.last_position;
        RETURN NEXT;
        offs := offs + p_counts[g];
    END LOOP;
    IF n_replayed > 0 AND n_replayed < n_streams THEN
        RAISE EXCEPTION 'an append reuses event ids already recorded by a different append'
            USING ERRCODE = 'AE002', DETAIL = '';
    END IF;
END
$$;
