-- What every stored click costs PostgreSQL, trimmed (measured with bench/drain):
-- click_events_link_at served no query (analytics read rollups, retention reads `at`), yet
-- every raw event paid an insert into it.
DROP INDEX click_events_link_at;
