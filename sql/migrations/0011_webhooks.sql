-- Completion webhooks (issue 16, part 3): a batch's callback_url, the outbox
-- its final state writes an event to (in the very statement that finishes or
-- cancels it), every delivery attempt, and a signing secret per API key.

ALTER TABLE batches ADD COLUMN callback_url text
    CONSTRAINT batches_callback_url_http CHECK (callback_url ~ '^https?://' AND length(callback_url) <= 2048);
COMMENT ON COLUMN batches.callback_url IS
    'Called (POST, signed) once the batch reaches a final state; NULL: no webhook. May hold a secret '
    'in its query string, so the API shows it without its query.';

CREATE TABLE webhook_secrets (
    client      text PRIMARY KEY REFERENCES api_keys (name),
    secret      text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_secrets IS
    'Per API key, the secret its batches'' webhooks are signed with (whsec_ and base64, shown once by '
    'keys create or keys webhook-secret). Kept as is: signing needs it. Runners read it; the web '
    'roles cannot. Batches without one are signed with WEBHOOK_SECRET.';

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
    CONSTRAINT webhook_events_finished_iff_final CHECK ((state = 'pending') = (finished_at IS NULL))
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

-- Wake the runners' deliverers (LISTEN webhook_events) when an event is written.
CREATE FUNCTION webhook_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhook_events', NEW.id::text);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION webhook_events_notify() IS 'NOTIFY webhook_events for each new outbox row.';
CREATE TRIGGER webhook_events_notify AFTER INSERT ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION webhook_events_notify();

-- The web reads events and attempts (as the caller, under row-level security)
-- and writes an event only through a cancel; secrets are the runners' alone.
REVOKE ALL ON webhook_secrets FROM sentiment_web, sentiment_web_admin;
REVOKE UPDATE, DELETE ON webhook_events FROM sentiment_web, sentiment_web_admin;
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
