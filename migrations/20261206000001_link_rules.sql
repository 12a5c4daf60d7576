-- API 0.2, "More link fields": the redirect status, query forwarding, tags and redirect
-- rules of a link. Every column has a constant default, so adding them rewrites no rows.
--
-- redirect_rules is the rules' wire form, `[{conditions: [{type, value}], url}]`, validated
-- by the API (src/rules.rs) and read whole with the link on a cache miss; the database only
-- checks the shape it relies on. tags are stored lowercased, without duplicates; the GIN
-- index serves the list's `tag=` filter (`tags @> ARRAY[$tag]`).
ALTER TABLE links
    ADD COLUMN redirect_type smallint NOT NULL DEFAULT 302,
    ADD COLUMN forward_query boolean NOT NULL DEFAULT false,
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN redirect_rules jsonb NOT NULL DEFAULT '[]',
    ADD CONSTRAINT links_redirect_type CHECK (redirect_type IN (301, 302, 307, 308)),
    ADD CONSTRAINT links_tags_count CHECK (cardinality(tags) <= 10),
    ADD CONSTRAINT links_redirect_rules_array CHECK (jsonb_typeof(redirect_rules) = 'array'
        AND jsonb_array_length(redirect_rules) <= 20);

CREATE INDEX links_tags ON links USING gin (tags);

-- The URL a click was sent to when a redirect rule chose it (NULL: the link's originalUrl at
-- the time of the click).
ALTER TABLE click_events ADD COLUMN rule_url text;
