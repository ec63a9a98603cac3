-- Set-based appends: the same two functions, the same checks and the same bytes in the log,
-- written with one INSERT of all the events instead of one INSERT per event.
--
-- `append_streams` called `append_stream` once per stream with slices of its arrays: every
-- slice copies the whole array it is cut from, so a call over many streams cost streams ×
-- events in copying, and every event was its own INSERT. Both functions now check what they
-- checked before, compute versions, positions and hashes in a loop over array indexes, and
-- write the events with one INSERT … SELECT FROM unnest(…) (the per-row triggers on `events`,
-- append-only and the Idempotency-Key fence, fire as before).
--
-- What stays exactly as it was: the signatures and results; the lock order (stream heads in
-- the order given, which the store sorts); AE001 with the same JSON DETAIL, AE002 for a reused
-- id with other content or a mixed replay, AE003 for a head written by a higher transaction id;
-- a replay writes nothing and returns the first result; position = xid * 2^20 + ordinal, the
-- ordinals continuing across the streams of one call; the hash chain
-- sha256(previous hash || digest || int8send(version) || int8send(position)).
--
-- One difference, in the order of errors only: the expectations of all the streams are checked
-- before any event is written, so an append with a wrong expected version on one stream and a
-- reused event id (or a taken-over Idempotency-Key claim) on an earlier one now reports the
-- version conflict. It wrote nothing before and writes nothing now.
--
-- CREATE OR REPLACE keeps the grants of 20261201000001_least_privilege.sql but resets the
-- SECURITY DEFINER and search path set there with ALTER FUNCTION, so both are stated again.

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
CREATE OR REPLACE FUNCTION append_stream(
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    n          integer := coalesce(cardinality(p_event_ids), 0);
    head_ver   bigint := -1;
    head_pos   bigint := 0;
    h          bytea := '\x';
    exists_now boolean;
    matches    boolean;
    replay_at  bigint;
    bad_at     bigint;
    base       bigint;
    pos        bigint;
    ver        bigint;
    hashes     bytea[];
    i          integer;
BEGIN
    -- The arrays are read by index and unnested side by side: unequal lengths would pair one
    -- event's id with another's content (unnest pads the shorter arrays with NULLs).
    IF n = 0 OR cardinality(p_event_types) IS DISTINCT FROM n OR cardinality(p_schema_versions) IS DISTINCT FROM n
       OR cardinality(p_data) IS DISTINCT FROM n OR cardinality(p_metadata) IS DISTINCT FROM n
       OR cardinality(p_digests) IS DISTINCT FROM n THEN
        RAISE EXCEPTION 'append_stream needs at least one event and arrays of one length each'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

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
            -- The first event that is not recorded at its place with the same content.
            SELECT min(u.i) INTO bad_at
              FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata)
                   WITH ORDINALITY AS u(event_id, event_type, schema_version, data, metadata, i)
             WHERE NOT EXISTS (
                   SELECT 1 FROM events e
                    WHERE e.event_id = u.event_id
                      AND e.stream_id = p_stream
                      AND e.stream_version = replay_at + u.i - 1
                      AND e.event_type = u.event_type
                      AND e.schema_version = u.schema_version
                      AND e.data = u.data
                      AND e.metadata = u.metadata);
            IF bad_at IS NOT NULL THEN
                RAISE EXCEPTION 'event id % is already recorded with other content', p_event_ids[bad_at]
                    USING ERRCODE = 'AE002', DETAIL = p_event_ids[bad_at]::text;
            END IF;
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
    -- The chain is sequential, so it is computed here; event i gets version head_ver + i and
    -- position base + p_first_ordinal + i - 1, which the INSERT below recomputes from its index.
    hashes := array_fill(NULL::bytea, ARRAY[n]);
    ver := head_ver;
    FOR i IN 1 .. n LOOP
        ver := ver + 1;
        pos := base + p_first_ordinal + i - 1;
        h := sha256(h || p_digests[i] || int8send(ver) || int8send(pos));
        hashes[i] := h;
    END LOOP;
    INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type,
                        schema_version, data, metadata, recorded_at, hash)
    SELECT base + p_first_ordinal + u.i - 1, p_stream, head_ver + u.i, u.event_id, u.event_type, u.schema_version,
           u.data, u.metadata, p_recorded_at, u.hash
      FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata, hashes)
           WITH ORDINALITY AS u(event_id, event_type, schema_version, data, metadata, hash, i);
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
-- all streams are concatenated; p_counts says how many belong to each stream. Errors and
-- replays as for append_stream, stream by stream in the order given; besides, AE002 (DETAIL
-- empty) when some streams are replays and others are not.
CREATE OR REPLACE FUNCTION append_streams(
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    n_streams  integer := coalesce(cardinality(p_streams), 0);
    n_events   integer := coalesce(cardinality(p_event_ids), 0);
    -- By stream, indexed like p_streams.
    found_head boolean[];   -- its head exists (and is locked)
    head_ver   bigint[];
    head_pos   bigint[];
    head_hash  bytea[];
    first_at   integer[];   -- index of its first event in the event arrays
    matched    boolean[];   -- its expectation holds
    probe_ids  uuid[];      -- its first event id, where a replay must be looked for
    replay_at  bigint[];    -- version of its first event, if the append is a replay
    new_ver    bigint[];    -- its head after the append
    new_pos    bigint[];
    new_hash   bytea[];
    -- By event, indexed like p_event_ids.
    ev_stream  text[];
    ev_ver     bigint[];
    ev_hash    bytea[];
    n_replayed integer := 0;
    bad_at     bigint;
    base       bigint;
    ver        bigint;
    h          bytea;
    head       record;
    g          integer;
    i          integer := 0;
    k          integer;
BEGIN
    IF n_streams = 0 THEN
        RETURN;
    END IF;
    -- The arrays are read by index and unnested side by side, so their lengths must agree, and
    -- a stream given twice would have its head read twice and be numbered from the same version.
    IF cardinality(p_expected_kinds) IS DISTINCT FROM n_streams
       OR cardinality(p_expected_versions) IS DISTINCT FROM n_streams
       OR cardinality(p_counts) IS DISTINCT FROM n_streams
       OR cardinality(p_event_types) IS DISTINCT FROM n_events
       OR cardinality(p_schema_versions) IS DISTINCT FROM n_events
       OR cardinality(p_data) IS DISTINCT FROM n_events
       OR cardinality(p_metadata) IS DISTINCT FROM n_events
       OR cardinality(p_digests) IS DISTINCT FROM n_events
       OR (SELECT coalesce(sum(c), 0) <> n_events OR bool_or(c IS NULL OR c < 1) FROM unnest(p_counts) c)
       OR (SELECT count(DISTINCT s) <> n_streams FROM unnest(p_streams) s) THEN
        RAISE EXCEPTION 'append_streams needs each stream once, at least one event per stream, p_counts summing to the events and arrays of matching lengths'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    found_head := array_fill(false, ARRAY[n_streams]);
    head_ver := array_fill(-1::bigint, ARRAY[n_streams]);
    head_pos := array_fill(0::bigint, ARRAY[n_streams]);
    head_hash := array_fill('\x'::bytea, ARRAY[n_streams]);
    first_at := array_fill(0, ARRAY[n_streams]);
    matched := array_fill(false, ARRAY[n_streams]);
    probe_ids := array_fill(NULL::uuid, ARRAY[n_streams]);
    replay_at := array_fill(NULL::bigint, ARRAY[n_streams]);

    -- Lock the existing heads in the order given: ORDER BY runs before FOR UPDATE, so the rows
    -- are locked one after the other in that order, as the per-stream calls did. A head updated
    -- while this waited is read as committed.
    FOR head IN
        SELECT given.ord::integer AS ord, s.version, s.last_position, s.last_hash
          FROM unnest(p_streams) WITH ORDINALITY AS given(stream_id, ord)
          JOIN streams s ON s.stream_id = given.stream_id
         ORDER BY given.ord
           FOR UPDATE OF s
    LOOP
        found_head[head.ord] := true;
        head_ver[head.ord] := head.version;
        head_pos[head.ord] := head.last_position;
        head_hash[head.ord] := head.last_hash;
    END LOOP;

    FOR g IN 1 .. n_streams LOOP
        first_at[g] := i + 1;
        matched[g] := CASE p_expected_kinds[g]
                          WHEN 1 THEN NOT found_head[g]
                          WHEN 2 THEN found_head[g]
                          WHEN 3 THEN found_head[g] AND head_ver[g] = p_expected_versions[g]
                          ELSE true END;
        -- A replay is only possible in an existing stream, and only looked for where the
        -- expectation alone does not settle it (a matching exact version is a new append).
        IF found_head[g] AND (NOT matched[g] OR p_expected_kinds[g] IN (0, 2)) THEN
            probe_ids[g] := p_event_ids[i + 1];
        END IF;
        i := i + p_counts[g];
    END LOOP;

    -- Replays: streams whose first event is already recorded in them. Then the first event of
    -- those streams (by index, so in stream order) not recorded at its place with the same
    -- content, if any.
    FOR head IN
        SELECT probe.ord::integer AS ord, e.stream_version
          FROM unnest(p_streams, probe_ids) WITH ORDINALITY AS probe(stream_id, event_id, ord)
          JOIN events e ON e.event_id = probe.event_id AND e.stream_id = probe.stream_id
    LOOP
        replay_at[head.ord] := head.stream_version;
        n_replayed := n_replayed + 1;
    END LOOP;
    IF n_replayed > 0 THEN
        SELECT min(u.i) INTO bad_at
          FROM unnest(p_streams, first_at, p_counts, replay_at) AS r(stream_id, first_i, n, at)
          CROSS JOIN LATERAL generate_series(0, r.n - 1) AS step(nth)
          JOIN unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS u(event_id, event_type, schema_version, data, metadata, i)
            ON u.i = r.first_i + step.nth
         WHERE r.at IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM events e
                WHERE e.event_id = u.event_id
                  AND e.stream_id = r.stream_id
                  AND e.stream_version = r.at + step.nth
                  AND e.event_type = u.event_type
                  AND e.schema_version = u.schema_version
                  AND e.data = u.data
                  AND e.metadata = u.metadata);
    END IF;

    -- The checks, stream by stream in the order given, so the first stream at fault is the one
    -- reported, as when each stream was appended in turn.
    FOR g IN 1 .. n_streams LOOP
        IF replay_at[g] IS NOT NULL THEN
            IF bad_at BETWEEN first_at[g] AND first_at[g] + p_counts[g] - 1 THEN
                RAISE EXCEPTION 'event id % is already recorded with other content', p_event_ids[bad_at]
                    USING ERRCODE = 'AE002', DETAIL = p_event_ids[bad_at]::text;
            END IF;
            CONTINUE;
        END IF;
        IF NOT matched[g] THEN
            RAISE EXCEPTION 'stream % is not at the expected version', p_streams[g]
                USING ERRCODE = 'AE001',
                      DETAIL = json_build_object('stream', p_streams[g], 'expected_kind', p_expected_kinds[g],
                                                 'expected', p_expected_versions[g], 'actual', head_ver[g])::text;
        END IF;
        -- The transaction id is taken only once the heads are read, so it is higher than the
        -- id of whoever wrote them, unless the two raced for a lock (then retry).
        IF base IS NULL THEN
            base := pg_current_xact_id()::text::bigint * 1048576;
        END IF;
        IF head_pos[g] >= base THEN
            RAISE EXCEPTION 'stream % was written by a later transaction; retry', p_streams[g] USING ERRCODE = 'AE003';
        END IF;
    END LOOP;
    IF n_replayed > 0 AND n_replayed < n_streams THEN
        RAISE EXCEPTION 'an append reuses event ids already recorded by a different append'
            USING ERRCODE = 'AE002', DETAIL = '';
    END IF;

    IF n_replayed = n_streams THEN
        -- A replay of the whole append writes nothing and answers what the first one did.
        RETURN QUERY
            SELECT r.at, r.at + r.n - 1, e.global_position
              FROM unnest(replay_at, p_counts, first_at) WITH ORDINALITY AS r(at, n, first_i, ord)
              JOIN events e ON e.event_id = p_event_ids[r.first_i + r.n - 1]
             ORDER BY r.ord;
        RETURN;
    END IF;

    -- Versions and the hash chain, event by event (each hash needs the previous one); event i
    -- of the call gets position base + i - 1, so the ordinals continue across the streams.
    ev_stream := array_fill(NULL::text, ARRAY[n_events]);
    ev_ver := array_fill(NULL::bigint, ARRAY[n_events]);
    ev_hash := array_fill(NULL::bytea, ARRAY[n_events]);
    new_ver := array_fill(NULL::bigint, ARRAY[n_streams]);
    new_pos := array_fill(NULL::bigint, ARRAY[n_streams]);
    new_hash := array_fill(NULL::bytea, ARRAY[n_streams]);
    i := 0;
    FOR g IN 1 .. n_streams LOOP
        ver := head_ver[g];
        h := head_hash[g];
        FOR k IN 1 .. p_counts[g] LOOP
            i := i + 1;
            ver := ver + 1;
            h := sha256(h || p_digests[i] || int8send(ver) || int8send(base + i - 1));
            ev_stream[i] := p_streams[g];
            ev_ver[i] := ver;
            ev_hash[i] := h;
        END LOOP;
        new_ver[g] := ver;
        new_pos[g] := base + i - 1;
        new_hash[g] := h;
    END LOOP;

    -- One INSERT for every event, in position order.
    INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type,
                        schema_version, data, metadata, recorded_at, hash)
    SELECT base + u.i - 1, u.stream_id, u.version, u.event_id, u.event_type, u.schema_version,
           u.data, u.metadata, p_recorded_at, u.hash
      FROM unnest(ev_stream, ev_ver, p_event_ids, p_event_types, p_schema_versions, p_data,
                  p_metadata, ev_hash)
           WITH ORDINALITY AS u(stream_id, version, event_id, event_type, schema_version, data,
                                metadata, hash, i);

    -- The heads: the existing ones (locked above) moved, the new ones created in the order given.
    UPDATE streams s
       SET version = nh.version, last_position = nh.position, last_hash = nh.hash
      FROM unnest(p_streams, new_ver, new_pos, new_hash, found_head)
           AS nh(stream_id, version, position, hash, existed)
     WHERE nh.existed AND s.stream_id = nh.stream_id;
    INSERT INTO streams (stream_id, version, last_position, last_hash)
    SELECT nh.stream_id, nh.version, nh.position, nh.hash
      FROM unnest(p_streams, new_ver, new_pos, new_hash, found_head)
           AS nh(stream_id, version, position, hash, existed)
     WHERE NOT nh.existed;

    RETURN QUERY
        SELECT r.from_ver + 1, r.to_ver, r.to_pos
          FROM unnest(head_ver, new_ver, new_pos) WITH ORDINALITY AS r(from_ver, to_ver, to_pos, ord)
         ORDER BY r.ord;
END
$$;
