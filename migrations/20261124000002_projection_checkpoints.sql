-- Where each projection has got to in $all. Written in the same transaction as the
-- projection's own changes, so a crash neither loses nor double-counts an event.
CREATE TABLE projection_checkpoints (
    name        text        PRIMARY KEY,
    version     integer     NOT NULL,
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Set by `aisc projections rebuild` when another process runs the projection: that runner
-- rebuilds between batches and clears it when the fresh tables are swapped in.
ALTER TABLE projection_checkpoints ADD COLUMN rebuild_requested boolean NOT NULL DEFAULT false;
