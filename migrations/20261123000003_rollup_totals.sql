-- All-time and daily rollups next to the hourly ones, so the analytics routes read a few
-- hundred rows whatever a link's age and traffic (a link with a million clicks over 90 days
-- has ~70 000 hourly rows but at most regions x device classes total rows and 30 x regions
-- daily rows for its 30-day chart).
--
-- They are folded from click_rollups_hourly by statement-level triggers, so they change in
-- the same transaction as the hourly rows (the aggregator's exactly-once argument covers them
-- unchanged) and whatever writes hourly rows (any aggregator version during a rolling
-- upgrade, a backfill) keeps them right. Deleting a link cascades to all three.

CREATE TABLE click_rollups_total (
    link_id        uuid NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    owner_key_id   uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    region         text NOT NULL,
    device_class   text NOT NULL,
    clicks         bigint NOT NULL DEFAULT 0,
    gated          bigint NOT NULL DEFAULT 0,
    latency_us_sum bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, region, device_class)
);
CREATE INDEX click_rollups_total_owner ON click_rollups_total (owner_key_id);

CREATE TABLE click_rollups_daily (
    link_id      uuid NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    owner_key_id uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day          date NOT NULL,
    region       text NOT NULL,
    clicks       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day, region)
);
CREATE INDEX click_rollups_daily_owner_day ON click_rollups_daily (owner_key_id, day);

-- Adds what one statement added to click_rollups_hourly: the new rows of an INSERT, or
-- new minus old of an UPDATE (the aggregator's INSERT ... ON CONFLICT DO UPDATE fires both).
-- The delta's source differs by event; the folding is one statement (EXECUTE sees the
-- transition tables too).
CREATE FUNCTION click_rollups_fold() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        delta := 'SELECT link_id, owner_key_id, bucket, region, device_class, clicks, gated, latency_us_sum
                  FROM new_rows';
    ELSE
        delta := 'SELECT n.link_id, n.owner_key_id, n.bucket, n.region, n.device_class,
                         n.clicks - o.clicks AS clicks, n.gated - o.gated AS gated,
                         n.latency_us_sum - o.latency_us_sum AS latency_us_sum
                  FROM new_rows n
                  JOIN old_rows o USING (link_id, bucket, region, device_class)
                  WHERE (n.clicks, n.gated, n.latency_us_sum)
                        IS DISTINCT FROM (o.clicks, o.gated, o.latency_us_sum)';
    END IF;
    EXECUTE format($fold$
        WITH d AS (%s), t AS (
            INSERT INTO click_rollups_total AS r
                (link_id, owner_key_id, region, device_class, clicks, gated, latency_us_sum)
            SELECT link_id, owner_key_id, region, device_class,
                   sum(clicks), sum(gated), sum(latency_us_sum)
            FROM d GROUP BY link_id, owner_key_id, region, device_class
            ON CONFLICT (link_id, region, device_class) DO UPDATE SET
                clicks = r.clicks + EXCLUDED.clicks,
                gated = r.gated + EXCLUDED.gated,
                latency_us_sum = r.latency_us_sum + EXCLUDED.latency_us_sum,
                updated_at = now()
        )
        INSERT INTO click_rollups_daily AS r (link_id, owner_key_id, day, region, clicks)
        SELECT link_id, owner_key_id, (bucket AT TIME ZONE 'UTC')::date, region, sum(clicks)
        FROM d GROUP BY link_id, owner_key_id, (bucket AT TIME ZONE 'UTC')::date, region
        ON CONFLICT (link_id, day, region) DO UPDATE SET clicks = r.clicks + EXCLUDED.clicks
    $fold$, delta);
    RETURN NULL;
END
$$;

CREATE TRIGGER click_rollups_fold_insert AFTER INSERT ON click_rollups_hourly
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION click_rollups_fold();
CREATE TRIGGER click_rollups_fold_update AFTER UPDATE ON click_rollups_hourly
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION click_rollups_fold();

-- What already exists.
INSERT INTO click_rollups_total (link_id, owner_key_id, region, device_class, clicks, gated, latency_us_sum, updated_at)
SELECT link_id, owner_key_id, region, device_class,
       sum(clicks), sum(gated), sum(latency_us_sum), max(updated_at)
FROM click_rollups_hourly GROUP BY link_id, owner_key_id, region, device_class;
INSERT INTO click_rollups_daily (link_id, owner_key_id, day, region, clicks)
SELECT link_id, owner_key_id, (bucket AT TIME ZONE 'UTC')::date, region, sum(clicks)
FROM click_rollups_hourly GROUP BY link_id, owner_key_id, (bucket AT TIME ZONE 'UTC')::date, region;
