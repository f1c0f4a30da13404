-- Autovacuum for the tables every transfer writes, chosen for tables that
-- grow for months (decision 0085). PostgreSQL's defaults wait for 20% of a
-- table to change: on a ledger of a hundred million transfers that is
-- twenty million rows between vacuums or analyzes, each then a long pass,
-- and statistics that lag the data by days.
--
-- accounts: every transfer updates two rows. fillfactor 80 (migration
-- 0001) keeps those updates HOT; vacuum after 2% of the rows are dead, with
-- no cost-based pauses, so pruned pages are reclaimed before the table
-- spreads.
ALTER TABLE accounts SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);
-- transfers, entries: insert-only. Vacuum after 1% new rows (it sets the
-- visibility map and freezes in small passes, instead of one pass over a
-- fifth of the table), and analyze after 1%, so the planner knows the
-- newest created_at values searches ask for.
ALTER TABLE transfers SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
ALTER TABLE entries SET (autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01);
-- The outbox and consumer_applied keep migration 0004's settings (a vacuum
-- every 10,000 dead rows, no pauses); the idempotency keys' partitions are
-- dropped whole and keep the defaults.
