CREATE TABLE audit_trail (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_type      text        NOT NULL,
    actor           text,
    role            text,
    request_id      text,
    correlation_id  text,
    recorded_at     timestamptz NOT NULL,
    effective_on    date
);
