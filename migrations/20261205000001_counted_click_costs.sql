-- What a counted click costs PostgreSQL, trimmed (measured with bench/drain and
-- bench/performance, see bench/RESULTS.md "Performance II"):
--
-- 1. links_owner_clicks indexed the column every counted click changes, so no update of
--    links.clicks could be HOT: each one wrote a new entry into all five indexes of links
--    (10 µs per link and commit, against 4 µs HOT). GET /api/top-links (limit <= 100) now
--    sorts the caller's links found through links_owner_created instead.
DROP INDEX links_owner_clicks;

-- 2. Room on every page for the next version of a row, so updates of counters stay HOT
--    (same page, no index entries). Applies to pages written from now on; VACUUM FULL
--    rewrites older ones at an operator's convenience.
ALTER TABLE links SET (fillfactor = 80);
ALTER TABLE click_rollups_hourly SET (fillfactor = 70);
ALTER TABLE click_rollups_total SET (fillfactor = 70);
ALTER TABLE click_rollups_daily SET (fillfactor = 70);

-- 3. The daily and all-time rollups are written by the aggregator itself, in the same
--    transaction as the hourly rows and its stream offset (so exactly-once covers them as
--    before), from the sums it folded in memory: no statement-level trigger re-reading the
--    transition tables of every hourly upsert.
DROP TRIGGER click_rollups_fold_insert ON click_rollups_hourly;
DROP TRIGGER click_rollups_fold_update ON click_rollups_hourly;
DROP FUNCTION click_rollups_fold();

-- 4. Nothing read click_rollups_hourly.updated_at (lastUpdated comes from the all-time rows).
--    Dropping it also stops an aggregator of an older version, still running during a rolling
--    upgrade, from writing hourly rows without the daily and all-time ones: its statement
--    names the column, fails, and is retried until that process is restarted on the new
--    version (the entries stay pending meanwhile; nothing is lost or counted twice).
ALTER TABLE click_rollups_hourly DROP COLUMN updated_at;
