-- Core schema: API keys, campaigns, links, and the click rollups the analytics routes read.
-- Raw click events and consumer offsets belong to the click pipeline (worker/aggregator).

CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY,
    -- SHA-256 of the 64-hex key; the key itself is never stored.
    key_hash            bytea NOT NULL UNIQUE,
    -- First 10 characters of the key, shown back as "abcdef0123..." in settings.
    key_prefix          text NOT NULL,
    name                text,
    email               text,
    is_admin            boolean NOT NULL DEFAULT false,
    webhook_url         text,
    rate_limit_per_min  integer NOT NULL,
    rate_limit_per_hour integer NOT NULL,
    logs_enabled        boolean NOT NULL DEFAULT true,
    analytics_level     text NOT NULL DEFAULT 'full',
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);

CREATE TABLE campaigns (
    id           uuid PRIMARY KEY,
    owner_key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    name         text NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_owner_created ON campaigns (owner_key_id, created_at DESC);

CREATE TABLE links (
    id                 uuid PRIMARY KEY,
    owner_key_id       uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    short_code         text NOT NULL UNIQUE,
    original_url       text NOT NULL,
    -- Maintained by the aggregator from the click stream, never by the request path.
    clicks             bigint NOT NULL DEFAULT 0,
    title              text,
    description        text,
    favicon            text,
    -- Argon2id PHC string; never leaves the store module.
    password_hash      text,
    is_protected       boolean NOT NULL DEFAULT false,
    is_expiring        boolean NOT NULL DEFAULT false,
    expires_at         timestamptz,
    is_rate_limited    boolean NOT NULL DEFAULT false,
    max_clicks_per_min integer NOT NULL DEFAULT 100,
    campaign_id        uuid REFERENCES campaigns (id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT links_protected_has_password CHECK (NOT is_protected OR password_hash IS NOT NULL),
    CONSTRAINT links_expiring_has_date CHECK (NOT is_expiring OR expires_at IS NOT NULL),
    CONSTRAINT links_max_clicks_range CHECK (max_clicks_per_min BETWEEN 1 AND 1000000)
);
CREATE INDEX links_owner_created ON links (owner_key_id, created_at DESC, id DESC);
CREATE INDEX links_owner_clicks ON links (owner_key_id, clicks DESC);
CREATE INDEX links_campaign ON links (campaign_id) WHERE campaign_id IS NOT NULL;

-- One row per link x hour x region x device class. `clicks` counts redirects and successful
-- verifies; `gated` counts visits that did not reach the target (password form, per-link cap).
-- `latency_us_sum` is the summed server-side redirect time, for avgLatency.
CREATE TABLE click_rollups_hourly (
    link_id        uuid NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    owner_key_id   uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    bucket         timestamptz NOT NULL,
    region         text NOT NULL,
    device_class   text NOT NULL,
    clicks         bigint NOT NULL DEFAULT 0,
    gated          bigint NOT NULL DEFAULT 0,
    latency_us_sum bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, bucket, region, device_class)
);
CREATE INDEX click_rollups_owner_bucket ON click_rollups_hourly (owner_key_id, bucket);
