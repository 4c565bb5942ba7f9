-- Keep the churned queue tables small. Staging (batch_rows) and the queue
-- (chunks) take every row in and out again; with the default thresholds
-- (20 % of the table) vacuum falls further behind the bigger they grow, and
-- they grow with the speed of the service (make soak: staging peaked at
-- 119 MiB and 383k dead rows by default, 62.5 MiB and 123k with these, on
-- 5,000,000 rows; README, Performance). A fixed threshold and no cost delay
-- make vacuum follow the churn instead of the table's size. (The server's
-- autovacuum_naptime, 10 s, is set where the server is started: embedded
-- PostgreSQL and docker-compose.yml.)
ALTER TABLE batch_rows SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE chunks SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);
