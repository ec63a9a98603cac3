-- Bearer tokens of staff tools: only a SHA-256 hash of each token is kept.
CREATE TABLE api_tokens (
    name        text        PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE,
    roles       text[]      NOT NULL CHECK (cardinality(roles) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Responses of POSTs sent with an Idempotency-Key, so that a retry gets the first response
-- and writes nothing. Keys are per principal.
CREATE TABLE idempotent_requests (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    status        smallint    NOT NULL,
    content_type  text        NOT NULL,
    headers       jsonb       NOT NULL,
    body          bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
