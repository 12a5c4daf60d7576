-- A click on a link seen for the first time in an hour inserts three rollup rows (hourly,
-- daily, all-time), and each insert checked two foreign keys: the link and the owner's API
-- key (each check a lookup and a row lock on the referenced row). The owner's check is
-- redundant: a rollup row's owner is its link's owner (the aggregator takes it from the
-- link row it has just updated), and deleting a key already removes its rollups through its
-- links (links.owner_key_id ... ON DELETE CASCADE, then the rollups' link_id ... ON DELETE
-- CASCADE). Measured on 4 000 new rows per table: 12 -> 9 µs per row.
ALTER TABLE click_rollups_hourly DROP CONSTRAINT click_rollups_hourly_owner_key_id_fkey;
ALTER TABLE click_rollups_total DROP CONSTRAINT click_rollups_total_owner_key_id_fkey;
ALTER TABLE click_rollups_daily DROP CONSTRAINT click_rollups_daily_owner_key_id_fkey;
