-- The current schema in one file: what applying every file of migrations/
-- in order produces (tests/integration/test_schema.py proves it). Read this
-- to learn the schema; change it only together with a new migration.
--
-- High-volume tables (batch_inputs, batch_results) carry no foreign key to
-- batches: a foreign key fires a trigger per inserted row, which would cost
-- COPY a large share of its speed. Their rows are only ever written by code
-- that has just created or locked the batch, and they are removed with it.
--
-- batch_inputs, batch_results, batch_row_errors and batch_result_keys are
-- partitioned alike by RANGE of batch_id,
-- batch_partition_span() consecutive ids per partition, so retention drops
-- whole partitions (see the end of this file and core/batches/partitions.py).

-- API keys: who the clients are (python -m jobrunner keys ...).
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

CREATE TABLE batches (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id        text NOT NULL UNIQUE CHECK (public_id ~ '^batch-[0-9a-f]{32}$'),
    status           text NOT NULL DEFAULT 'processing',
    total_count      integer NOT NULL DEFAULT 0 CHECK (total_count >= 0),
    processed_count  integer NOT NULL DEFAULT 0 CHECK (processed_count >= 0),
    positive_count   integer NOT NULL DEFAULT 0,
    negative_count   integer NOT NULL DEFAULT 0,
    neutral_count    integer NOT NULL DEFAULT 0,
    chunk_size       integer NOT NULL CHECK (chunk_size > 0),
    source_filename  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    invalid_count    integer NOT NULL DEFAULT 0 CHECK (invalid_count >= 0),
    failed_count     integer NOT NULL DEFAULT 0 CHECK (failed_count >= 0),
    deleted_at       timestamptz,
    client           text REFERENCES api_keys (name),
    metadata         jsonb NOT NULL DEFAULT '{}'
                     CONSTRAINT batches_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object'),
    expires_after    interval
                     CONSTRAINT batches_expires_after_positive CHECK (expires_after > interval '0'),
    callback_url     text
                     CONSTRAINT batches_callback_url_http
                     CHECK (callback_url ~ '^https?://' AND length(callback_url) <= 2048),
    commit_seq       integer NOT NULL DEFAULT 0 CHECK (commit_seq >= 0),
    field_names      text[] NOT NULL DEFAULT '{}',
    CONSTRAINT batches_status_check
        CHECK (status IN ('processing', 'completed', 'completed_with_errors', 'cancelled')),
    CONSTRAINT batches_counts_within_total
        CHECK (processed_count + failed_count + invalid_count <= total_count),
    CONSTRAINT batches_sentiment_counts_add_up
        CHECK (positive_count + negative_count + neutral_count = processed_count),
    CONSTRAINT batches_completed_at_iff_finished
        CHECK ((status IN ('completed', 'completed_with_errors', 'cancelled')) = (completed_at IS NOT NULL))
);
COMMENT ON TABLE batches IS
    'One uploaded CSV file: its progress and, once completed, its sentiment summary.';
COMMENT ON COLUMN batches.id IS 'Internal key used by the other tables.';
COMMENT ON COLUMN batches.public_id IS
    'The id clients see (batch-<32 hex digits>, 128 random bits).';
COMMENT ON COLUMN batches.field_names IS
    'The uploaded file''s columns kept with each row (all but the text and the id), in file order; '
    'batch_inputs.fields holds their values in the same order.';
COMMENT ON COLUMN batches.total_count IS 'Data rows read from the file, valid or not.';
COMMENT ON COLUMN batches.processed_count IS 'Rows scored so far; equals total_count when completed.';
COMMENT ON COLUMN batches.invalid_count IS
    'Data rows set aside as invalid (see batch_row_errors); never scored.';
COMMENT ON COLUMN batches.chunk_size IS 'Rows per chunk when the batch was uploaded.';
COMMENT ON COLUMN batches.started_at IS 'When a runner first claimed one of its chunks.';
COMMENT ON COLUMN batches.completed_at IS 'When the batch completed or was cancelled.';
COMMENT ON COLUMN batches.failed_count IS
    'Rows whose scoring failed MAX_ATTEMPTS times; kept in batch_results with their error.';

COMMENT ON COLUMN batches.deleted_at IS
    'When DELETE (or RESULTS_TTL) removed the batch: clients no longer see it, and runners are '
    'removing its rows in bounded steps; the row itself goes last.';

COMMENT ON COLUMN batches.client IS
    'The API key (its name) that uploaded the batch and owns it; NULL when uploaded without a key '
    '(no keys yet, or API_TOKEN).';
-- Listing one client's batches, newest first (the web app's default list), and
-- the quota's and fair share's look at a client's processing batches.
CREATE INDEX batches_client_created_idx ON batches (client, created_at DESC, public_id DESC);
CREATE INDEX batches_client_processing_idx ON batches (client) WHERE status = 'processing';

COMMENT ON COLUMN batches.metadata IS
    'The client''s labels: up to 16 string pairs (key up to 64 characters, value up to 512).';
COMMENT ON COLUMN batches.commit_seq IS
    'Entries of batch_commits so far: the seq of the last finish that committed this batch''s results.';
COMMENT ON COLUMN batches.expires_after IS
    'How long after it finishes the batch is kept: expires_after at upload, else RESULTS_TTL as it '
    'was then; NULL keeps it until deleted.';
-- /batches?metadata[k]=v: containment (metadata @> '{"k": "v"}').
CREATE INDEX batches_metadata_idx ON batches USING gin (metadata jsonb_path_ops);

-- The /batches list, newest first; public_id breaks ties (not id: the list's cursor would
-- show a sequence every client shares).
CREATE INDEX batches_created_at_idx ON batches (created_at DESC, public_id DESC);
-- Runners find the batches whose rows are still being removed through this one.
CREATE INDEX batches_deleted_idx ON batches (deleted_at) WHERE deleted_at IS NOT NULL;

-- Every input row, written by the upload's COPY; a JSON Lines file whose keys
-- first appear late pads the earlier rows' fields once, in the same
-- transaction, before anyone can read them; never changed after the upload
-- commits. A set-aside row is
-- staged like the others, in the same COPY, with row_number = -error_number
-- and its problem; the upload moves it to batch_row_errors before it commits,
-- so committed rows are all positive. (One COPY stream, constant memory,
-- however many rows are bad.)
CREATE TABLE batch_inputs (
    batch_id    bigint NOT NULL,
    row_number  integer NOT NULL,
    line_number integer,
    client_id   text NOT NULL,
    text        text NOT NULL,
    problem     text,
    fields      text[],
    PRIMARY KEY (batch_id, row_number),
    CONSTRAINT batch_inputs_numbering CHECK (row_number <> 0 AND (row_number > 0) = (problem IS NULL))
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_inputs IS
    'Every uploaded row to score, as the upload wrote it, for the batch''s life: never updated or '
    'moved once the upload commits (a JSON Lines file whose keys first appear late pads its earlier '
    'rows'' fields before then). Partitioned as batch_results is.';
COMMENT ON COLUMN batch_inputs.row_number IS 'Position of the row among the data rows of the file, from 1.';
COMMENT ON COLUMN batch_inputs.client_id IS 'The id column of the uploaded file, kept as given.';
COMMENT ON COLUMN batch_inputs.line_number IS 'Line of the file where the row starts (the header is line 1).';
COMMENT ON COLUMN batch_inputs.fields IS
    'The values of the batch''s field_names in this row, in the same order; NULL when the file has '
    'no other columns, and for set-aside rows.';
COMMENT ON COLUMN batch_inputs.problem IS
    'reason<TAB>detail of a set-aside row while its upload is in progress (row_number < 0); the '
    'upload moves such rows to batch_row_errors before it commits, so committed rows have none.';

CREATE TABLE chunks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id          bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    first_row         integer NOT NULL,
    last_row          integer NOT NULL,
    state             text NOT NULL DEFAULT 'ready'
                      CHECK (state IN ('ready', 'claimed', 'done')),
    attempts          integer NOT NULL DEFAULT 0,
    claimed_by        text,
    claim_token       uuid,
    claimed_at        timestamptz,
    lease_expires_at  timestamptz,
    finished_at       timestamptz,
    last_error        text,
    fair_key          bigint NOT NULL DEFAULT 0,
    available_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chunks_row_range CHECK (first_row BETWEEN 1 AND last_row),
    CONSTRAINT chunks_lease_iff_claimed
        CHECK ((state = 'claimed') = (claim_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);
COMMENT ON TABLE chunks IS
    'The work queue: each row is a range of one batch''s rows that a runner scores in one go.';
COMMENT ON COLUMN chunks.state IS
    'ready: waiting; claimed: leased to a runner until lease_expires_at; done: results committed.';
COMMENT ON COLUMN chunks.attempts IS 'How many times the chunk was leased; survives runner crashes.';
COMMENT ON COLUMN chunks.claimed_by IS 'The runner (host:pid) that holds or last held the lease.';
COMMENT ON COLUMN chunks.claim_token IS
    'Random token of the current lease; finishing requires it, so an expired holder cannot finish.';
COMMENT ON COLUMN chunks.last_error IS 'Why the last attempt failed, when it did.';
COMMENT ON COLUMN chunks.fair_key IS
    'Round-robin position across batches: runners claim the smallest key first.';
COMMENT ON COLUMN chunks.available_at IS 'A retried chunk is not claimed before this time (backoff).';

-- Fair sharing: a chunk's fair_key is its place in a round-robin over the
-- batches that have work. A new batch's chunks get keys from the smallest key
-- still waiting, so they interleave one-for-one with the older batches'
-- remaining chunks instead of queueing behind them (start-time fair queueing).
-- The claim query reads only this small index, in claim order: done chunks
-- never enter it.
CREATE INDEX chunks_ready_idx ON chunks (fair_key, id) WHERE state = 'ready';
-- Expired leases are found through this one.
CREATE INDEX chunks_lease_idx ON chunks (lease_expires_at) WHERE state = 'claimed';
CREATE INDEX chunks_batch_id_idx ON chunks (batch_id);

CREATE TABLE batch_results (
    batch_id    bigint NOT NULL,
    row_number  integer NOT NULL,
    compound    double precision CHECK (compound BETWEEN -1 AND 1),
    pos         double precision,
    neu         double precision,
    neg         double precision,
    error       text,
    -- A failed row keeps its place in the results (so row numbers stay dense)
    -- with no scores and the error instead.
    -- The primary key is also the guarantee that a row is scored exactly once.
    PRIMARY KEY (batch_id, row_number),
    CONSTRAINT batch_results_scored_or_failed
        CHECK ((error IS NULL) = (compound IS NOT NULL AND pos IS NOT NULL AND neu IS NOT NULL AND neg IS NOT NULL))
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_results IS
    'What scoring adds to each input row (batch_inputs has the row itself, joined on (batch_id, '
    'row_number)); one per input row once scored. Partitioned by batch_id, batch_partition_span() '
    'batches per partition (see batch_partitions).';
COMMENT ON COLUMN batch_results.compound IS
    'VADER compound score in [-1, 1]; the label is vader_label(compound), the confidence abs(compound).';
COMMENT ON COLUMN batch_results.pos IS 'VADER share of positive sentiment in the text.';
COMMENT ON COLUMN batch_results.neu IS 'VADER share of neutral sentiment in the text.';
COMMENT ON COLUMN batch_results.neg IS 'VADER share of negative sentiment in the text.';
COMMENT ON COLUMN batch_results.error IS 'Why scoring this row failed; NULL for scored rows.';

CREATE FUNCTION vader_label(compound double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN compound >= 0.05 THEN 'positive'
            WHEN compound <= -0.05 THEN 'negative'
            WHEN compound IS NOT NULL THEN 'neutral' END;
COMMENT ON FUNCTION vader_label(double precision) IS
    'positive, negative or neutral from a VADER compound score, by VADER''s thresholds (+-0.05); '
    'NULL for a row whose scoring failed.';

CREATE FUNCTION json_number(value double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value IS NULL OR value IN ('NaN', 'Infinity', '-Infinity') THEN 'null'
            WHEN value = trunc(value) THEN value::text || '.0'
            ELSE value::text END;
COMMENT ON FUNCTION json_number(double precision) IS
    'A score as JSON text, as Python''s json writes it: shortest exact digits, and 1.0, 0.0 and -0.0 '
    'with their point, so a client reads the same float whether a row came from a page or a follow '
    'stream; null for NULL and for what JSON has no number for (NaN, infinities).';

-- A claim reads its chunks' rows through this function: EXECUTE plans the read
-- with the batch id known, so the planner reads, and locks, that batch's one
-- partition of batch_inputs. Read inside the claim statement itself, the id is
-- known only while it runs, and every partition would be planned and locked on
-- every claim: a cost that grows with the number of batches kept.
CREATE FUNCTION batch_inputs_of_chunks(batch bigint, chunk_ids bigint[], first_rows integer[], last_rows integer[])
RETURNS TABLE (chunk_id bigint, row_numbers integer[], texts text[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT c.id, r.row_numbers, r.texts
         FROM unnest($2, $3, $4) AS c (id, first_row, last_row)
         CROSS JOIN LATERAL (
             SELECT array_agg(i.row_number) AS row_numbers, array_agg(i.text) AS texts
             FROM (SELECT row_number, text FROM batch_inputs
                   WHERE batch_id = $1 AND row_number BETWEEN c.first_row AND c.last_row
                   ORDER BY row_number) AS i
         ) AS r'
        USING batch, chunk_ids, first_rows, last_rows;
END
$$;
COMMENT ON FUNCTION batch_inputs_of_chunks(bigint, bigint[], integer[], integer[]) IS
    'Each chunk''s rows of one batch as two arrays (row numbers and texts, in order), read from the '
    'batch''s one partition of batch_inputs: what a claim hands a runner.';

CREATE TABLE batch_result_keys (
    batch_id    bigint NOT NULL,
    row_number  integer NOT NULL,
    sentiment   text NOT NULL,
    compound    double precision NOT NULL,
    PRIMARY KEY (batch_id, row_number)
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_result_keys IS
    'The sort keys of a final batch''s scored rows, written in one pass the first time a filtered '
    'or score-ordered listing of it is asked for (result_checkpoints listing ''keys'' marks it '
    'written); partitioned as batch_results is.';
CREATE INDEX batch_result_keys_sentiment_idx ON batch_result_keys (batch_id, sentiment, row_number);
CREATE INDEX batch_result_keys_compound_idx ON batch_result_keys (batch_id, sentiment, compound, row_number);

CREATE TABLE batch_commits (
    batch_id    bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    seq         integer NOT NULL CHECK (seq > 0),
    first_rows  integer[] NOT NULL,
    last_rows   integer[] NOT NULL,
    PRIMARY KEY (batch_id, seq),
    CONSTRAINT batch_commits_ranges
        CHECK (cardinality(first_rows) > 0 AND cardinality(first_rows) = cardinality(last_rows))
);
-- Numbered under the batch row's lock that each finish takes, so the numbers
-- follow commit order and any snapshot sees a gapless prefix of them: a
-- follower that has passed entry n is never overtaken by a later commit.
COMMENT ON TABLE batch_commits IS
    'One entry per finish of a batch''s chunks, numbered 1, 2, ... in commit order (batches.commit_seq '
    'is the last): the row ranges, one per chunk in row order, whose results that finish wrote.';

-- A final batch's compound scores summed up once: their mean and a 20-bin
-- histogram, written when the batch reaches a final state with no chunk in a
-- runner's hands (or by the first read of it after that), then only read.
CREATE TABLE batch_summaries (
    batch_id       bigint PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    scored_count   bigint NOT NULL CHECK (scored_count >= 0),
    mean_compound  double precision,
    histogram      integer[] NOT NULL CHECK (cardinality(histogram) = 20),
    computed_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE batch_summaries IS
    'A final batch''s compound scores summed up once no runner holds one of its chunks: kept, never '
    'recomputed.';
COMMENT ON COLUMN batch_summaries.scored_count IS 'Rows with a compound score (failed rows have none).';
COMMENT ON COLUMN batch_summaries.mean_compound IS 'The mean compound score; NULL when no row has one.';
COMMENT ON COLUMN batch_summaries.histogram IS
    'Rows per bin of compound score: bin i holds [-1 + i/10, -0.9 + i/10), the last one also 1; a score '
    'is binned on its four decimals as an integer (least(19, (round(compound * 10000) + 10000) / 1000)).';
COMMENT ON COLUMN batch_summaries.computed_at IS 'When the summary was counted.';

-- A final batch's results summed up per value of one of its kept columns
-- (batches.field_names): the 1,000 largest groups and the rest folded into
-- one, written by the first read of that column once the batch is final with
-- no chunk in a runner's hands, then only read.
CREATE TABLE batch_group_summaries (
    batch_id      bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    field_name    text NOT NULL,
    rank          integer NOT NULL CHECK (rank BETWEEN 0 AND 1000),
    value         text,
    groups        bigint NOT NULL CHECK (groups >= 0),
    row_count     bigint NOT NULL,
    positive      bigint NOT NULL CHECK (positive >= 0),
    negative      bigint NOT NULL CHECK (negative >= 0),
    neutral       bigint NOT NULL CHECK (neutral >= 0),
    failed        bigint NOT NULL CHECK (failed >= 0),
    compound_sum  double precision,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, field_name, rank),
    CONSTRAINT batch_group_summaries_other CHECK ((rank = 0) = (value IS NULL) AND (rank = 0 OR groups = 1)),
    CONSTRAINT batch_group_summaries_counts_add_up CHECK (row_count = positive + negative + neutral + failed)
);
COMMENT ON TABLE batch_group_summaries IS
    'A final batch''s results per value of one kept column, counted once no runner holds one of its '
    'chunks: the 1,000 largest groups (rank 1, 2, ...: most rows first, then value in byte order) and '
    'rank 0, the rest folded together (always present: it marks the column as counted). Kept, never '
    'recomputed.';
COMMENT ON COLUMN batch_group_summaries.field_name IS 'The kept column (one of batches.field_names).';
COMMENT ON COLUMN batch_group_summaries.value IS 'The group''s value of the column; NULL on rank 0.';
COMMENT ON COLUMN batch_group_summaries.groups IS
    'Distinct values the row counts: 1 for a group, how many were folded together on rank 0.';
COMMENT ON COLUMN batch_group_summaries.row_count IS
    'Results of the group: positive + negative + neutral + failed (rows whose scoring failed).';
COMMENT ON COLUMN batch_group_summaries.compound_sum IS
    'The sum of the group''s compound scores (failed rows have none); NULL when none was scored. '
    'The mean is compound_sum / (positive + negative + neutral).';
COMMENT ON COLUMN batch_group_summaries.computed_at IS 'When the groups were counted.';

CREATE TABLE batch_row_errors (
    batch_id      bigint NOT NULL,
    error_number  integer NOT NULL CHECK (error_number > 0),
    line_number   integer NOT NULL,
    client_id     text,
    reason        text NOT NULL
                  CHECK (reason IN ('wrong_field_count', 'empty_text', 'text_too_long', 'nul_character',
                                    'id_too_long', 'invalid_json', 'not_an_object', 'missing_text',
                                    'wrong_type', 'duplicate_key')),
    detail        text NOT NULL,
    PRIMARY KEY (batch_id, error_number)
) PARTITION BY RANGE (batch_id);
COMMENT ON TABLE batch_row_errors IS
    'Rows of an upload that were set aside and not scored, with the line and the reason. '
    'Partitioned as batch_results is.';
COMMENT ON COLUMN batch_row_errors.error_number IS 'Position among the batch''s set-aside rows, from 1.';
COMMENT ON COLUMN batch_row_errors.reason IS
    'wrong_field_count, empty_text, text_too_long, nul_character or id_too_long; for JSON Lines also '
    'invalid_json, not_an_object, missing_text, wrong_type or duplicate_key.';
COMMENT ON COLUMN batch_row_errors.client_id IS
    'The id column of the row as given, its first 1,000 characters at most.';

CREATE TABLE runners (
    name            text PRIMARY KEY,
    host            text NOT NULL,
    pid             integer NOT NULL,
    scorer          text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    chunks_done     bigint NOT NULL DEFAULT 0,
    rows_done       bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE runners IS
    'Runner processes alive now: each beats its heartbeat while it runs; entries silent '
    'for RUNNER_EXPIRY_SECONDS are removed by the other runners.';
COMMENT ON COLUMN runners.name IS 'host:pid, as in chunks.claimed_by.';

CREATE TABLE service_secrets (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE service_secrets IS
    'Secrets every web process must share, e.g. the key that signs result cursors '
    'when SECRET_KEY is not set.';
INSERT INTO service_secrets (name, value)
VALUES ('cursor_signing_key', encode(sha256(gen_random_uuid()::text::bytea), 'hex'));

-- Browser sessions and the sign-in rate limit (webapp.sessions, webapp.login_limit).
CREATE TABLE web_sessions (
    id_hash          bytea PRIMARY KEY,
    signed_in_as     text NOT NULL,
    credential_hash  bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);
COMMENT ON TABLE web_sessions IS
    'Signed-in browsers, one row per /login, which also ends the browser''s previous session and '
    'keeps SESSIONS_PER_KEY per key, the oldest going first; /logout deletes the row. The cookie '
    'holds a random id that only this row''s hash names, never a token.';
COMMENT ON COLUMN web_sessions.id_hash IS
    'SHA-256 of the random id in the browser''s cookie; the id itself is stored nowhere, so reading '
    'this table signs no one in.';
COMMENT ON COLUMN web_sessions.signed_in_as IS
    'Who is signed in: API_TOKEN for the holder of the API token (an API key''s name, once keys exist).';
COMMENT ON COLUMN web_sessions.credential_hash IS
    'SHA-256 of the credential given at sign-in; the session holds only while that credential is '
    'still accepted (a changed API_TOKEN ends every session made with the old one).';
COMMENT ON COLUMN web_sessions.created_at IS 'When the browser signed in.';
COMMENT ON COLUMN web_sessions.expires_at IS
    'created_at + SESSION_LIFETIME; later the row no longer signs anyone in, and the next sign-in '
    'deletes it.';
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
CREATE INDEX web_sessions_credential_idx ON web_sessions (credential_hash, created_at);

CREATE TABLE login_failures (
    client_address   text NOT NULL,
    failures         integer NOT NULL CHECK (failures > 0),
    window_ends_at   timestamptz NOT NULL,
    family           text NOT NULL CHECK (family IN ('api_token', 'client_key')),
    PRIMARY KEY (client_address, family)
);
COMMENT ON TABLE login_failures IS
    'Wrong credentials per client address and credential family (login form or Authorization '
    'header), for the sign-in rate limit: past LOGIN_MAX_FAILURES, that family''s sign-ins from '
    'that address are refused until window_ends_at (a valid client key never is).';
COMMENT ON COLUMN login_failures.client_address IS
    'The client''s address (from a proxy in FORWARDED_ALLOW_IPS, the one it forwards); an IPv6 '
    'client''s /64.';
COMMENT ON COLUMN login_failures.failures IS 'Wrong credentials since the window started.';
COMMENT ON COLUMN login_failures.window_ends_at IS
    'First failure + LOGIN_FAILURE_WINDOW; a failure after it starts a new window.';
COMMENT ON COLUMN login_failures.family IS
    'What the wrong credential was a guess at: api_token (anything not shaped like a client key) '
    'or client_key.';
CREATE INDEX login_failures_window_idx ON login_failures (window_ends_at);

CREATE TABLE idempotency_keys (
    client       text NOT NULL,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    body_sha256  bytea CHECK (length(body_sha256) = 32),
    batch_id     bigint REFERENCES batches (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, key)
);
COMMENT ON TABLE idempotency_keys IS
    'Idempotency-Key headers of uploads, per client, for IDEMPOTENCY_TTL: a retry with the same key '
    'and the same file answers the batch the first one made.';
COMMENT ON COLUMN idempotency_keys.client IS 'The API key''s name; '''' for uploads without a key.';
COMMENT ON COLUMN idempotency_keys.body_sha256 IS
    'SHA-256 of the file and the upload''s options: the same key with another file is refused (422).';
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
-- Deleting a batch deletes its key by cascade: found through this one.
CREATE INDEX idempotency_keys_batch_idx ON idempotency_keys (batch_id);

CREATE TABLE result_checkpoints (
    batch_id   bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    listing    text NOT NULL,
    rank       integer NOT NULL CHECK (rank >= 0),
    position   jsonb,
    PRIMARY KEY (batch_id, listing, rank)
);
COMMENT ON TABLE result_checkpoints IS
    'Where every 100th row of a finished batch''s ordered or filtered results lies, so page P of '
    'them is one index read from the nearest checkpoint. Written the first time a page past the first '
    'is asked for; rank 0 marks a listing whose checkpoints are all written, and listing ''keys'' the '
    'batch''s batch_result_keys written.';
COMMENT ON COLUMN result_checkpoints.listing IS
    'Which list: row:<sentiment> (file order), compound or -compound, optionally :<sentiment>.';
COMMENT ON COLUMN result_checkpoints.position IS 'The keyset position of the row of that rank, as a cursor holds it.';

-- Completion webhooks: see jobrunner/webhooks.py.
COMMENT ON COLUMN batches.callback_url IS
    'Called (POST, signed) once the batch reaches a final state; NULL: no webhook. May hold a secret '
    'in its query string, so the API shows it without its query.';

CREATE TABLE webhook_secrets (
    client      text PRIMARY KEY REFERENCES api_keys (name),
    secret      text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A replaced secret signs too for a while (0015): receivers switch without missing a webhook.
    previous_secret text CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    previous_until  timestamptz
);
COMMENT ON TABLE webhook_secrets IS
    'Per API key, the secret its batches'' webhooks are signed with (whsec_ and base64, shown once by '
    'keys create or keys webhook-secret). Kept as is: signing needs it. Runners read it; the web '
    'roles cannot. Batches without one are signed with WEBHOOK_SECRET.';
COMMENT ON COLUMN webhook_secrets.previous_secret IS
    'The secret this one replaced: webhooks are signed with it too until previous_until; NULL then '
    'means WEBHOOK_SECRET (the key''s first own secret replaced it).';
COMMENT ON COLUMN webhook_secrets.previous_until IS
    'When the previous secret stops signing: WEBHOOK_SECRET_OVERLAP after the replacement.';

CREATE TABLE webhook_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id          bigint NOT NULL UNIQUE REFERENCES batches (id) ON DELETE CASCADE,
    webhook_id        text NOT NULL UNIQUE DEFAULT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
    type              text NOT NULL
                      CHECK (type IN ('batch.completed', 'batch.completed_with_errors', 'batch.cancelled')),
    callback_url      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    body              text,
    state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    claimed_by        text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    finished_at       timestamptz,
    last_error        text,
    retried_at        timestamptz,
    CONSTRAINT webhook_events_finished_iff_final CHECK ((state = 'pending') = (finished_at IS NULL)),
    attempts_before_retry integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE webhook_events IS
    'The webhook outbox: one event per batch with a callback_url, written by the statement that '
    'finishes or cancels the batch, delivered at least once by the runners (jobrunner/webhooks.py).';
COMMENT ON COLUMN webhook_events.webhook_id IS
    'The webhook-id header: the same on every attempt, for the receiver to drop duplicates.';
COMMENT ON COLUMN webhook_events.body IS
    'The exact body sent, fixed by the first attempt (the batch as GET /batch/<id> showed it then).';
COMMENT ON COLUMN webhook_events.state IS
    'pending: to be (re)tried at next_attempt_at; delivered: a 2xx answered; failed: given up after '
    'WEBHOOK_RETRY_FOR, or answered 410 Gone.';
COMMENT ON COLUMN webhook_events.next_attempt_at IS
    'When the next attempt is due. A claim sets it to the lease''s end, so an attempt whose runner '
    'died is due again once its lease runs out.';
COMMENT ON COLUMN webhook_events.retried_at IS
    'When its owner last asked for it again (POST /batch/<id>/webhooks/retry); WEBHOOK_RETRY_FOR '
    'counts from then instead of from created_at.';
COMMENT ON COLUMN webhook_events.attempts_before_retry IS
    'Attempts made before the last retry; backoff counts from the ones after it.';
COMMENT ON COLUMN webhook_events.lease_token IS
    'Random token of the attempt in progress; recording its outcome requires it.';
-- Runners claim due events through this one, in due order.
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at, id) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    event_id     bigint NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    runner       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    duration_ms  integer,
    status_code  integer,
    error        text,
    PRIMARY KEY (event_id, attempt)
);
COMMENT ON TABLE webhook_attempts IS
    'Every delivery attempt: written when a runner claims the event, completed with the answer''s '
    'status code or the error; one never completed was interrupted (its runner died or stopped).';
COMMENT ON COLUMN webhook_attempts.error IS
    'Why the attempt failed without an answer: refused address, connection, TLS, timeout.';

-- Webhooks are delivered per client in turn: a claim takes a due event of the
-- client served longest ago (or never), so one key's backlog of slow webhooks
-- waits behind every other key's next one, not in front of them all.
CREATE TABLE webhook_turns (
    client     text PRIMARY KEY,
    served_at  timestamptz NOT NULL
);
COMMENT ON TABLE webhook_turns IS
    'When a deliverer last claimed a webhook of each client (its API key; '''' for batches without '
    'one): claims go to the client with a due event served longest ago (webhook_events_claim).';

-- Wake the runners' deliverers (LISTEN webhook_events) when an event is written.
CREATE FUNCTION webhook_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_events', NEW.id::text);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION webhook_events_notify() IS
    'NOTIFY webhook_events for each new outbox row, and for each one sent again (retried_at set).';
CREATE TRIGGER webhook_events_notify AFTER INSERT ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION webhook_events_notify();
-- ... and when its owner asks for it again (webhook_events_retry).
CREATE TRIGGER webhook_events_notify_retry AFTER UPDATE OF retried_at ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION webhook_events_notify();

-- Keep the churned queue table small. The queue (chunks) takes every chunk
-- in and out again; with the default thresholds (20 % of the table) vacuum
-- falls further behind the bigger it grows, and it grows with the speed of
-- the service. A fixed threshold and no cost delay make vacuum follow the
-- churn instead of the table's size. (The server's
-- autovacuum_naptime, 10 s, is set where the server is started: embedded
-- PostgreSQL and docker-compose.yml.)
ALTER TABLE chunks SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);

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
ALTER TABLE batch_inputs ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_results ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_row_errors ENABLE ROW LEVEL SECURITY;
ALTER TABLE batch_result_keys ENABLE ROW LEVEL SECURITY;

CREATE POLICY batches_own ON batches TO sentiment_web
    USING (client = current_setting('sentiment.client', true));
CREATE POLICY batch_inputs_own ON batch_inputs TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_results_own ON batch_results TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_row_errors_own ON batch_row_errors TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));

CREATE POLICY batches_all ON batches TO sentiment_web_admin USING (true);
CREATE POLICY batch_inputs_all ON batch_inputs TO sentiment_web_admin USING (true);
CREATE POLICY batch_results_all ON batch_results TO sentiment_web_admin USING (true);
CREATE POLICY batch_row_errors_all ON batch_row_errors TO sentiment_web_admin USING (true);
CREATE POLICY batch_result_keys_own ON batch_result_keys TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_result_keys_all ON batch_result_keys TO sentiment_web_admin USING (true);
ALTER TABLE batch_commits ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_commits_own ON batch_commits TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_commits_all ON batch_commits TO sentiment_web_admin USING (true);
REVOKE INSERT, UPDATE, DELETE ON batch_commits FROM sentiment_web, sentiment_web_admin;
ALTER TABLE batch_summaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_summaries_own ON batch_summaries TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_summaries_all ON batch_summaries TO sentiment_web_admin USING (true);
REVOKE UPDATE, DELETE ON batch_summaries FROM sentiment_web, sentiment_web_admin;
ALTER TABLE batch_group_summaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_group_summaries_own ON batch_group_summaries TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY batch_group_summaries_all ON batch_group_summaries TO sentiment_web_admin USING (true);
REVOKE UPDATE, DELETE ON batch_group_summaries FROM sentiment_web, sentiment_web_admin;

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE result_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_own ON idempotency_keys TO sentiment_web
    USING (client = current_setting('sentiment.client', true));
CREATE POLICY result_checkpoints_own ON result_checkpoints TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY idempotency_keys_all ON idempotency_keys TO sentiment_web_admin USING (true);
CREATE POLICY result_checkpoints_all ON result_checkpoints TO sentiment_web_admin USING (true);

-- The web reads events and attempts (as the caller, under row-level security),
-- writes an event only through a cancel, and changes one only to send it again
-- (webhook_events_retry); secrets are the runners' alone.
REVOKE ALL ON webhook_secrets FROM sentiment_web, sentiment_web_admin;
REVOKE ALL ON webhook_turns FROM sentiment_web, sentiment_web_admin;
REVOKE UPDATE, DELETE ON webhook_events FROM sentiment_web, sentiment_web_admin;
GRANT UPDATE (state, finished_at, next_attempt_at, retried_at, attempts_before_retry) ON webhook_events
    TO sentiment_web, sentiment_web_admin;
REVOKE INSERT, UPDATE, DELETE ON webhook_attempts FROM sentiment_web, sentiment_web_admin;
ALTER TABLE webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_events_own ON webhook_events TO sentiment_web
    USING (batch_id IN (SELECT id FROM batches));
CREATE POLICY webhook_attempts_own ON webhook_attempts TO sentiment_web
    USING (event_id IN (SELECT id FROM webhook_events));
CREATE POLICY webhook_events_all ON webhook_events TO sentiment_web_admin USING (true);
CREATE POLICY webhook_attempts_all ON webhook_attempts TO sentiment_web_admin USING (true);

-- Views for people in psql (sql/inspect.sql has queries built on them).

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

CREATE VIEW webhook_deliveries WITH (security_invoker = true) AS
SELECT b.public_id AS batch,
       b.client,
       e.webhook_id,
       e.type,
       e.callback_url,
       e.state,
       e.created_at AS event_at,
       CASE WHEN e.state = 'pending' THEN e.next_attempt_at END AS next_attempt_at,
       a.attempt,
       a.runner,
       a.started_at,
       a.duration_ms,
       a.status_code,
       a.error,
       CASE WHEN a.attempt IS NULL THEN NULL
            WHEN a.status_code BETWEEN 200 AND 299 THEN 'delivered'
            WHEN a.finished_at IS NOT NULL THEN 'failed'
            WHEN a.attempt = e.attempts AND e.lease_expires_at > now() THEN 'in_progress'
            ELSE 'interrupted' END AS outcome
FROM webhook_events AS e
JOIN batches AS b ON b.id = e.batch_id
LEFT JOIN webhook_attempts AS a ON a.event_id = e.id;
COMMENT ON VIEW webhook_deliveries IS
    'Every webhook event with each of its attempts (one row per attempt, or one without an attempt '
    'while none was made): outcome delivered, failed, in_progress or interrupted.';

-- Partitions of the batch tables, as psql
-- users and the purge see them, and how they are made.
CREATE FUNCTION batch_partition_span() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS 'SELECT 10::bigint';
COMMENT ON FUNCTION batch_partition_span() IS
    'Consecutive batch ids per partition of the partitioned batch tables (aligned: ids '
    'k*span .. k*span+span-1). Changing it needs a migration that keeps the existing bounds.';

CREATE VIEW batch_partitions WITH (security_invoker = true) AS
SELECT parent.relname AS table_name,
       part.relname AS partition,
       nullif(bound[1], 'MINVALUE')::bigint AS first_batch,
       bound[2]::bigint AS end_batch,
       i.inhdetachpending AS detach_pending,
       pg_total_relation_size(part.oid) AS bytes
FROM pg_inherits AS i
JOIN pg_class AS parent ON parent.oid = i.inhparent
JOIN pg_class AS part ON part.oid = i.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(part.relpartbound, part.oid),
                                'FROM \(''?([^'')]*)''?\) TO \(''?([^'')]*)''?\)') AS bound
WHERE i.inhparent IN ('batch_inputs'::regclass, 'batch_results'::regclass, 'batch_row_errors'::regclass,
                      'batch_result_keys'::regclass);
COMMENT ON VIEW batch_partitions IS
    'Every partition of batch_inputs, batch_results, batch_row_errors and batch_result_keys: the '
    'batch ids it holds (first_batch NULL: from the lowest), whether a DETACH CONCURRENTLY left it '
    'pending, its size with indexes.';
COMMENT ON COLUMN batch_partitions.end_batch IS 'The first batch id past the partition.';

-- The partitions that hold a batch's rows, found by name: batch_partitions_ensure
-- names each <table>_p<first id of the range>, and a table partitioned by 0012
-- keeps the batches before it in <table>_legacy. Each is a lookup by name and
-- one by oid in pg_inherits, whatever the catalog's statistics, so the cost is
-- the same with 100 partitions or 10,000.
CREATE FUNCTION batch_partitions_holding(batch bigint)
RETURNS TABLE (table_name text, partition regclass, detach_pending boolean)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
SELECT t.name, found.part, pg_partition_root(found.part) = found.part
FROM unnest(ARRAY['batch_inputs', 'batch_results', 'batch_row_errors', 'batch_result_keys']) AS t(name)
CROSS JOIN LATERAL (
    SELECT to_regclass(format('public.%I', t.name || '_p' || (batch - batch % batch_partition_span()))) AS part
    UNION ALL
    SELECT legacy
    FROM to_regclass(format('public.%I', t.name || '_legacy')) AS legacy
    WHERE batch < (regexp_match(pg_get_expr((SELECT relpartbound FROM pg_class WHERE oid = legacy), legacy),
                                'TO \(''?([^'')]*)''?\)'))[1]::bigint
) AS found
-- A partition, attached or pending detach (it is its own root then), of this table.
WHERE pg_partition_root(found.part) IN (t.name::regclass, found.part)
$$;
COMMENT ON FUNCTION batch_partitions_holding(bigint) IS
    'The partitions of batch_inputs, batch_results, batch_row_errors and batch_result_keys that hold '
    'a batch''s rows (by name: the same cost however many partitions there are).';

-- Runs as the tables' owner (SECURITY DEFINER), so the web's upload, working as
-- sentiment_web, gets partitions the owner owns and the runners can drop.
CREATE FUNCTION batch_partitions_ensure(batch bigint, make boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    span constant bigint := batch_partition_span();
    low constant bigint := batch - batch % span;
    tables constant text[] := ARRAY['batch_inputs', 'batch_results', 'batch_row_errors', 'batch_result_keys'];
    tbl text;
    present text[];
    part text;
    attempt integer;
    saved_timeout text;
    idx record;
BEGIN
    -- Held until commit, shared: the purge, which try-locks the range
    -- exclusively, does not drop it under an upload still writing to it.
    PERFORM pg_advisory_xact_lock_shared(20560, (low / span)::integer);
    -- Every table's partition, attached: a drop cut short between the tables
    -- leaves some, and the others are then made again below.
    IF (SELECT count(*) FROM batch_partitions_holding(batch) WHERE NOT detach_pending) = cardinality(tables) THEN
        RETURN true;
    END IF;
    IF NOT make THEN
        RETURN false;
    END IF;
    -- One maker per range; the next one finds it made (each statement reads
    -- the catalog afresh).
    PERFORM pg_advisory_xact_lock(20561, (low / span)::integer);
    saved_timeout := current_setting('lock_timeout');
    SELECT array_agg(table_name) INTO present FROM batch_partitions_holding(batch);
    FOREACH tbl IN ARRAY tables LOOP
        IF tbl = ANY (present) THEN
            CONTINUE;
        END IF;
        part := format('%s_p%s', tbl, low);
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, tbl);
        -- The parent's indexes, named after them (batch_results_pkey_p10), made on
        -- the empty table first: ATTACH then adopts them instead of naming its own.
        FOR idx IN SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisprimary
                   FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
                   WHERE i.indrelid = tbl::regclass LOOP
            EXECUTE replace(replace(idx.definition, format(' ON ONLY public.%s ', tbl), format(' ON public.%I ', part)),
                            format('INDEX %s ON', idx.name), format('INDEX %I ON', idx.name || '_p' || low));
            IF idx.indisprimary THEN
                EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY USING INDEX %I', part, idx.name || '_p' || low);
            END IF;
        END LOOP;
        EXECUTE format('REVOKE ALL ON %I FROM sentiment_web, sentiment_web_admin', part);
        -- Inputs and results are written once and read by key: a vacuum for their
        -- inserts alone would only set visibility bits nothing reads (dead rows, of
        -- set-aside rows moved out, a JSON Lines upload's rows padded before it
        -- commits or a deleted batch reaped, still start one), and
        -- statistics matter little to key-range reads: analysed when they doubled.
        IF tbl IN ('batch_inputs', 'batch_results') THEN
            EXECUTE format('ALTER TABLE %I SET (autovacuum_vacuum_insert_threshold = -1, '
                           'autovacuum_analyze_scale_factor = 1)', part);
        END IF;
        EXECUTE format('COMMENT ON TABLE %I IS %L', part,
                       format('Batches %s to %s of %s (a partition: dropped whole once all are deleted).',
                              low, low + span - 1, tbl));
        -- ATTACH takes SHARE UPDATE EXCLUSIVE on the parent (reads and writes go
        -- on); it waits at most 2 s at a time for a detach in progress.
        FOR attempt IN 1..5 LOOP
            BEGIN
                PERFORM set_config('lock_timeout', '2s', true);
                EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                               tbl, part, low, low + span);
                PERFORM set_config('lock_timeout', saved_timeout, true);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                PERFORM set_config('lock_timeout', saved_timeout, true);
                IF attempt = 5 THEN
                    RAISE;
                END IF;
                PERFORM pg_sleep(0.2 * attempt);
            END;
        END LOOP;
    END LOOP;
    RETURN true;
END
$$;
COMMENT ON FUNCTION batch_partitions_ensure(bigint, boolean) IS
    'Make sure the partitions holding a batch''s rows exist (make = false: only say whether they do), '
    'and keep the purge from dropping them until this transaction ends.';
REVOKE ALL ON FUNCTION batch_partitions_ensure(bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch_partitions_ensure(bigint, boolean) TO sentiment_web, sentiment_web_admin;

-- Partitions for the next batches (runners keep making them ahead; an upload
-- makes its own if they fall behind).
SELECT batch_partitions_ensure(CASE WHEN is_called THEN last_value + 1 ELSE last_value END + k * batch_partition_span())
FROM batches_id_seq, generate_series(0, 1) AS k;
