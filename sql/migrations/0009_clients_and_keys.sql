-- Many clients, one service: API keys, batch ownership that PostgreSQL itself
-- enforces (row-level security), per-client fair shares and usage.

CREATE TABLE api_keys (
    name                  text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'
                                               AND name NOT IN ('API_TOKEN', 'local')),
    key_hash              bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    role                  text NOT NULL DEFAULT 'client' CHECK (role IN ('client', 'admin')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    last_used_at          timestamptz,
    revoked_at            timestamptz,
    rows_uploaded_before  bigint NOT NULL DEFAULT 0,
    rows_scored_before    bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE api_keys IS
    'API keys (python -m jobrunner keys ...). Each names a client: the batches it uploads are its '
    'own. Only a hash of the key is kept; revoked keys stay, so their batches and usage keep a name.';
COMMENT ON COLUMN api_keys.name IS 'The client''s name: owner of its batches, label of its usage.';
COMMENT ON COLUMN api_keys.key_hash IS 'SHA-256 of the key (256 random bits); the key itself is shown once.';
COMMENT ON COLUMN api_keys.role IS 'client: sees its own batches; admin: sees every batch.';
COMMENT ON COLUMN api_keys.last_used_at IS 'Last request made with the key, to the minute.';
COMMENT ON COLUMN api_keys.revoked_at IS 'Set by keys revoke: from the next request on, the key is refused.';
COMMENT ON COLUMN api_keys.rows_uploaded_before IS
    'Rows uploaded in batches since removed (deleted or expired); client_usage adds the live ones.';
COMMENT ON COLUMN api_keys.rows_scored_before IS
    'Rows scored in batches since removed (deleted or expired); client_usage adds the live ones.';

ALTER TABLE batches ADD COLUMN client text REFERENCES api_keys (name);
COMMENT ON COLUMN batches.client IS
    'The API key (its name) that uploaded the batch and owns it; NULL when uploaded without a key '
    '(no keys yet, or API_TOKEN).';
-- Listing one client's batches, newest first (the web app's default list), and
-- the quota's and fair share's look at a client's processing batches.
CREATE INDEX batches_client_created_idx ON batches (client, created_at DESC, id DESC);
CREATE INDEX batches_client_processing_idx ON batches (client) WHERE status = 'processing';

-- The roles the web app works as (it switches to one per transaction; see
-- webapp/db.py). Roles belong to the whole cluster, so they may exist already:
-- then they are checked, not trusted. Without CREATEROLE the migration stops
-- with the commands a superuser runs first.
DO $$
DECLARE
    web_role text;
BEGIN
    FOREACH web_role IN ARRAY ARRAY['sentiment_web', 'sentiment_web_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = web_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', web_role);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;  -- made meanwhile
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'cannot create the role %: the migrating role needs CREATEROLE', web_role
                        USING HINT = format('As a superuser: CREATE ROLE %I NOLOGIN; GRANT %I TO %I;',
                                            web_role, web_role, current_user);
            END;
        END IF;
        -- Row-level security is only as good as the role: one that may log in,
        -- is a superuser or bypasses RLS would show the web every client's rows.
        IF EXISTS (SELECT 1 FROM pg_roles
                   WHERE rolname = web_role AND (rolsuper OR rolbypassrls OR rolcanlogin)) THEN
            RAISE EXCEPTION 'the role % exists with LOGIN, SUPERUSER or BYPASSRLS', web_role
                USING HINT = format('As a superuser: ALTER ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS;', web_role);
        END IF;
        IF NOT pg_has_role(current_user, web_role, 'MEMBER') THEN
            BEGIN
                EXECUTE format('GRANT %I TO %I', web_role, current_user);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'cannot grant the role % to %', web_role, current_user
                    USING HINT = format('As a superuser: GRANT %I TO %I;', web_role, current_user);
            END;
        END IF;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA public TO sentiment_web, sentiment_web_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO sentiment_web, sentiment_web_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO sentiment_web, sentiment_web_admin;
-- Keys are made and revoked from the command line only; the web reads them and
-- stamps last_used_at.
REVOKE ALL ON api_keys FROM sentiment_web, sentiment_web_admin;
GRANT SELECT, UPDATE (last_used_at) ON api_keys TO sentiment_web, sentiment_web_admin;
REVOKE ALL ON schema_migrations FROM sentiment_web, sentiment_web_admin;
-- /readyz compares the applied migrations with the code's.
GRANT SELECT ON schema_migrations TO sentiment_web, sentiment_web_admin;
-- Tables made by later migrations are the web's to use too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO sentiment_web, sentiment_web_admin;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO sentiment_web, sentiment_web_admin;

-- Row-level security. A client's transaction sees its own batches only: the
-- web app sets sentiment.client (SET LOCAL) to the caller's key name. The
-- batch's rows are visible through its batch. An admin's transaction runs as
-- sentiment_web_admin, which sees every row. Runners, and psql as the owner,
-- are not subject to the policies (table owners bypass them).
ALTER TABLE batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_results ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_row_errors ENABLE ROW LEVEL SECURITY;

CREATE POLICY batches_own ON batches TO sentiment_web
    USING (client = current_setting('sentiment.client', true));
CREATE POLICY batch_rows_own ON batch_rows TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_results_own ON batch_results TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_row_errors_own ON batch_row_errors TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));

CREATE POLICY batches_all ON batches TO sentiment_web_admin USING (true);
CREATE POLICY batch_rows_all ON batch_rows TO sentiment_web_admin USING (true);
CREATE POLICY batch_results_all ON batch_results TO sentiment_web_admin USING (true);
CREATE POLICY batch_row_errors_all ON batch_row_errors TO sentiment_web_admin USING (true);

-- The psql views name the owning client, and are read with the reader's own
-- rights (security_invoker), so the policies hold through them too.
DROP VIEW batch_progress;
DROP VIEW queue_depth;
DROP VIEW runner_activity;

CREATE VIEW batch_progress WITH (security_invoker = true) AS
SELECT b.public_id AS batch,
       b.client,
       b.status,
       b.processed_count AS processed,
       b.failed_count AS failed,
       b.invalid_count AS invalid,
       b.total_count AS total,
       round(100.0 * (b.processed_count + b.failed_count + b.invalid_count)
             / nullif(b.total_count, 0), 1) AS percent,
       round(coalesce(recent.rows, 0) / 60.0, 1) AS rows_per_second,
       CASE WHEN b.status = 'processing' AND recent.rows > 0
            THEN now() + make_interval(secs => (b.total_count - b.processed_count - b.failed_count
                                                - b.invalid_count) / (recent.rows / 60.0))
       END AS estimated_finish,
       b.created_at,
       b.started_at,
       b.completed_at
FROM batches AS b
LEFT JOIN LATERAL (
    -- Rows of the chunks finished in the last minute (a batch's done chunks
    -- are kept until it finishes).
    SELECT sum(c.last_row - c.first_row + 1) AS rows
    FROM chunks AS c
    WHERE c.batch_id = b.id AND c.state = 'done' AND c.finished_at > now() - interval '1 minute'
) AS recent ON true;
COMMENT ON VIEW batch_progress IS
    'Every batch with its progress, its speed over the last minute and, while processing, '
    'an estimated finish at that speed.';
COMMENT ON COLUMN batch_progress.rows_per_second IS 'Rows scored per second over the last minute.';

CREATE VIEW queue_depth WITH (security_invoker = true) AS
SELECT b.public_id AS batch,
       b.client,
       b.status,
       count(*) FILTER (WHERE c.state = 'ready' AND c.available_at <= now()) AS ready,
       count(*) FILTER (WHERE c.state = 'ready' AND c.available_at > now()) AS backing_off,
       count(*) FILTER (WHERE c.state = 'claimed') AS claimed,
       count(*) FILTER (WHERE c.state = 'done') AS done,
       b.failed_count AS failed_rows,
       max(c.attempts) AS most_attempts
FROM batches AS b
JOIN chunks AS c ON c.batch_id = b.id
GROUP BY b.id, b.public_id, b.client, b.status, b.failed_count;
COMMENT ON VIEW queue_depth IS
    'Chunks per batch that has any: ready to claim, backing off after a failure, claimed '
    'by a runner, done. Finished batches have no chunks, so they do not appear.';

CREATE VIEW runner_activity WITH (security_invoker = true) AS
SELECT r.name AS runner,
       r.host,
       r.pid,
       r.scorer,
       r.started_at,
       now() - r.heartbeat_at AS silent_for,
       r.chunks_done,
       r.rows_done,
       b.public_id AS working_on,
       b.client AS working_for,
       c.id AS chunk,
       c.last_row - c.first_row + 1 AS chunk_rows,
       c.claimed_at AS since,
       c.lease_expires_at
FROM runners AS r
LEFT JOIN chunks AS c ON c.claimed_by = r.name AND c.state = 'claimed'
LEFT JOIN batches AS b ON b.id = c.batch_id;
COMMENT ON VIEW runner_activity IS
    'Who works on what, since when: every live runner with each chunk it holds (one row per chunk; '
    'a runner claims CLAIM_CHUNKS at a time), or one row without a chunk when it holds none.';
COMMENT ON COLUMN runner_activity.silent_for IS 'Time since the runner''s last heartbeat.';

CREATE VIEW client_usage WITH (security_invoker = true) AS
SELECT coalesce(k.name, live.client) AS client,
       k.role,
       k.created_at,
       k.last_used_at,
       k.revoked_at,
       coalesce(k.rows_uploaded_before, 0) + coalesce(live.uploaded, 0) AS rows_uploaded,
       coalesce(k.rows_scored_before, 0) + coalesce(live.scored, 0) AS rows_scored,
       coalesce(live.queued, 0) AS rows_queued,
       coalesce(live.processing, 0) AS batches_processing
FROM api_keys AS k
FULL JOIN (
    SELECT b.client,
           sum(b.total_count) AS uploaded,
           sum(b.processed_count) AS scored,
           sum(b.total_count - b.processed_count - b.failed_count - b.invalid_count)
               FILTER (WHERE b.status = 'processing') AS queued,
           count(*) FILTER (WHERE b.status = 'processing') AS processing
    FROM batches AS b
    GROUP BY b.client
) AS live ON live.client = k.name;
COMMENT ON VIEW client_usage IS
    'Per API key: rows uploaded and scored since the key was made (batches removed since included), '
    'rows waiting or being scored now (what QUOTA_QUEUED_ROWS bounds). client is NULL for batches '
    'uploaded without a key.';
COMMENT ON COLUMN client_usage.rows_queued IS
    'Rows of the client''s processing batches not yet scored, failed or set aside.';
