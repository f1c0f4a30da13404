-- The outbox and the consumers' applied sequences are queue tables: rows are
-- inserted and deleted at the transfer rate, and the live table is small.
-- Autovacuum's default trigger (50 dead rows + 20% of the table's estimated
-- size, an estimate made when the table last held a backlog) let hundreds of
-- thousands of dead rows pile up, and every claim from the head of the outbox
-- walked their index entries (the relay's claim took 16 ms a round at 10,000
-- transfers/s). Vacuum them after a fixed number of dead rows instead, and
-- without the cost-based pauses: they are small.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE consumer_applied SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0);
