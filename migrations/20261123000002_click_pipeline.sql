-- Click pipeline: raw click events written by boltlink-worker, and the stream offsets that
-- make boltlink-aggregator's counting exactly-once.

-- One row per visit, enriched. `id` is the event id minted by the API, so a redelivered or
-- duplicated stream entry never creates a second row. No foreign key to links: raw events
-- outlive a deleted link until retention removes them.
CREATE TABLE click_events (
    id            uuid PRIMARY KEY,
    at            timestamptz NOT NULL,
    link_id       uuid NOT NULL,
    owner_key_id  uuid NOT NULL,
    region        text NOT NULL,
    device_class  text NOT NULL,
    browser       text NOT NULL,
    os            text NOT NULL,
    referrer_host text,
    is_bot        boolean NOT NULL,
    kind          text NOT NULL,
    latency_us    integer NOT NULL
);
CREATE INDEX click_events_at ON click_events (at);
CREATE INDEX click_events_link_at ON click_events (link_id, at);

-- Last stream entry id whose effects are committed, per consumer. Updated in the same
-- transaction as the counts it covers.
CREATE TABLE stream_offsets (
    consumer   text PRIMARY KEY,
    last_ms    bigint NOT NULL,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
