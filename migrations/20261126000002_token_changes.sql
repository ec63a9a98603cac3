-- Every change to a token (revocation, reissue under the same name, deletion) is announced on
-- `aisc_tokens` with the affected token's hash (hex), so that every running instance drops it
-- from its cache of verified tokens at once. NOTIFY is delivered at commit.
CREATE FUNCTION announce_token_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aisc_tokens', encode(OLD.token_hash, 'hex'));
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_changed
    AFTER UPDATE OR DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION announce_token_change();
