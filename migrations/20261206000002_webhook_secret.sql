-- API 0.2, webhook delivery: each key's signing secret, `whsec_` + 64 hex digits, made when
-- a webhook URL is first set and replaced by `POST /api/settings/developer/webhook/rotate`.
-- Kept readable: the sender needs it to compute the HMAC-SHA256 of every delivery (as
-- Stripe's and Svix's signing secrets are), and the key's holder reads it back.
ALTER TABLE api_keys
    ADD COLUMN webhook_secret text,
    ADD CONSTRAINT api_keys_webhook_secret_format
        CHECK (webhook_secret IS NULL OR webhook_secret ~ '^whsec_[0-9a-f]{64}$');
