CREATE INDEX audit_trail_by_stream ON audit_trail (stream_id, position);
CREATE INDEX audit_trail_by_actor ON audit_trail (actor, position);
CREATE INDEX audit_trail_by_type ON audit_trail (event_type, position);
CREATE INDEX audit_trail_by_time ON audit_trail (recorded_at);
CREATE INDEX audit_trail_by_business_date ON audit_trail (effective_on, position);
