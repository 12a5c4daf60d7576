-- API 0.2, webhook delivery. Three tables and the triggers that fill the outbox:
--
-- webhook_events   the outbox and each event's delivery state, one row per event. Link
--                  events are written by the triggers below in the transaction that changes
--                  the link (so an event exists if and only if the change committed);
--                  link.clicked events by boltlink-webhooks from webhook_clicks.
-- webhook_attempts one row per delivery attempt (status code or error, duration).
-- webhook_clicks   clicks of keys that have a webhook, staged from the click stream by
--                  boltlink-webhooks (idempotent by click id) until they are batched, at most
--                  1000 per event and one event per key per second.
--
-- data holds, for link events, the link row as it was (the password hash removed):
-- boltlink-webhooks renders the API's link object from it; for link.clicked, the batch as
-- sent, {"clicks": [...]}.
CREATE TABLE webhook_events (
    id               uuid PRIMARY KEY,
    api_key_id       uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    type             text NOT NULL
        CHECK (type IN ('link.created', 'link.updated', 'link.deleted', 'link.clicked')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    data             jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    finished_at      timestamptz
);
-- The dispatcher's scan: due events, the oldest first per key.
CREATE INDEX webhook_events_due ON webhook_events (api_key_id, next_attempt_at)
    WHERE status = 'pending';
-- The deliveries route: a key's newest first.
CREATE INDEX webhook_events_key_created ON webhook_events (api_key_id, created_at DESC, id DESC);
-- Retention of finished events.
CREATE INDEX webhook_events_finished ON webhook_events (finished_at) WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
    event_id    uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL,
    status_code integer,
    error       text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (event_id, attempt)
);

CREATE TABLE webhook_clicks (
    click_id   uuid PRIMARY KEY,
    api_key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    data       jsonb NOT NULL
);
CREATE INDEX webhook_clicks_key_at ON webhook_clicks (api_key_id, at, click_id);

-- The outbox triggers. Creates and deletes are statement-level (one query per statement, a
-- bulk import of 1000 links included); updates are row-level behind a WHEN that only an
-- owner's change passes (PATCH sets updated_at; the aggregator's click counts and the
-- background metadata fill leave it alone), so the aggregator's updates cost a comparison.
-- A key without a webhook URL gets no events.
CREATE FUNCTION webhook_link_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (id, api_key_id, type, data)
    SELECT gen_random_uuid(), n.owner_key_id, 'link.created', to_jsonb(n) - 'password_hash'
    FROM new_links n JOIN api_keys k ON k.id = n.owner_key_id
    WHERE k.webhook_url IS NOT NULL;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_link_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (id, api_key_id, type, data)
    SELECT gen_random_uuid(), o.owner_key_id, 'link.deleted', to_jsonb(o) - 'password_hash'
    FROM old_links o JOIN api_keys k ON k.id = o.owner_key_id
    WHERE k.webhook_url IS NOT NULL;
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_link_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (id, api_key_id, type, data)
    SELECT gen_random_uuid(), NEW.owner_key_id, 'link.updated', to_jsonb(NEW) - 'password_hash'
    FROM api_keys k WHERE k.id = NEW.owner_key_id AND k.webhook_url IS NOT NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER links_webhook_created AFTER INSERT ON links
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_link_created();
CREATE TRIGGER links_webhook_deleted AFTER DELETE ON links
    REFERENCING OLD TABLE AS old_links
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_link_deleted();
CREATE TRIGGER links_webhook_updated AFTER UPDATE ON links
    FOR EACH ROW WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION webhook_link_updated();
