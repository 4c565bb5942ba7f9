-- name: webhook_events_claim
-- Lease a due webhook event to one runner for one attempt (recorded as started), the clients taking turns, with the secrets that sign it (the key's, and the one it replaced while that still signs).
WITH due AS (
    -- Clients in turn: the due event of the client served longest ago (or
    -- never, webhook_turns), that client's oldest; one key's thousand slow
    -- webhooks wait behind every other key's next one. SKIP LOCKED: runners
    -- racing for the same event each take another (or none). The partial
    -- index webhook_events_due_idx holds only pending events, and a key's
    -- pending ones are capped at upload (WEBHOOK_MAX_PENDING), so the due
    -- events sorted here are few.
    SELECT e.id, coalesce(b.client, '') AS client
    FROM webhook_events AS e
    JOIN batches AS b ON b.id = e.batch_id
    LEFT JOIN webhook_turns AS t ON t.client = coalesce(b.client, '')
    WHERE e.state = 'pending' AND e.next_attempt_at <= now()
    ORDER BY t.served_at NULLS FIRST, e.next_attempt_at, e.id
    LIMIT 1
    FOR UPDATE OF e SKIP LOCKED
), turn AS (
    INSERT INTO webhook_turns (client, served_at)
    SELECT client, now() FROM due
    ON CONFLICT (client) DO UPDATE SET served_at = excluded.served_at
), leased AS (
    -- The lease is committed, not held by an open transaction. next_attempt_at
    -- moves to the lease's end: if this runner dies mid-attempt, the event is
    -- simply due again then, and the next claim takes it (same webhook_id).
    UPDATE webhook_events AS e
    SET attempts = e.attempts + 1,
        claimed_by = %(runner)s,
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        next_attempt_at = now() + make_interval(secs => %(lease_seconds)s)
    FROM due
    WHERE e.id = due.id
    RETURNING e.id, e.batch_id, e.webhook_id, e.type, e.callback_url, e.body, e.attempts AS attempt,
              e.attempts - e.attempts_before_retry AS attempt_since_retry, e.lease_token, e.created_at
), started AS (
    INSERT INTO webhook_attempts (event_id, attempt, runner)
    SELECT id, attempt, %(runner)s FROM leased
    ON CONFLICT (event_id, attempt) DO NOTHING
)
SELECT leased.*, b.client, s.secret AS key_secret,
       CASE WHEN s.previous_until > now() THEN s.previous_secret END AS key_previous_secret,
       -- The key's first own secret replaced WEBHOOK_SECRET, which signs beside it meanwhile.
       coalesce(s.previous_until > now() AND s.previous_secret IS NULL, false) AS key_replaced_service_secret
FROM leased
JOIN batches AS b ON b.id = leased.batch_id
LEFT JOIN webhook_secrets AS s ON s.client = b.client;

-- name: webhook_events_batch
-- The batch an event is about, as a Batch ({columns}), to build the event's body from.
SELECT {columns} FROM batches WHERE id = %(batch_id)s;

-- name: webhook_events_fix_body
-- Fix the body every attempt of an event sends: the first attempt's, if one already did (only while the caller's lease holds).
UPDATE webhook_events
SET body = coalesce(body, %(body)s)
WHERE id = %(event_id)s AND lease_token = %(lease_token)s AND state = 'pending'
RETURNING body;

-- name: webhook_events_record
-- Record an attempt's outcome, and move its event on: delivered (a 2xx, whoever holds the lease), given up, or due again after a backoff (only while the caller's lease holds).
WITH attempt AS (
    UPDATE webhook_attempts
    SET finished_at = now(),
        duration_ms = %(duration_ms)s,
        status_code = %(status_code)s,
        error = %(error)s
    WHERE event_id = %(event_id)s AND attempt = %(attempt)s AND finished_at IS NULL
), verdict AS (
    SELECT e.id,
           CASE WHEN %(delivered)s THEN 'delivered'
                WHEN %(gone)s
                  OR now() + make_interval(secs => %(backoff_seconds)s)
                     > coalesce(e.retried_at, e.created_at) + make_interval(secs => %(retry_for_seconds)s)
                    THEN 'failed'
                ELSE 'pending' END AS state
    FROM webhook_events AS e
    WHERE e.id = %(event_id)s AND e.state = 'pending'
      AND (e.lease_token = %(lease_token)s OR %(delivered)s)
    FOR UPDATE
)
UPDATE webhook_events AS e
SET state = v.state,
    finished_at = CASE WHEN v.state <> 'pending' THEN now() END,
    next_attempt_at = now() + make_interval(secs => %(backoff_seconds)s),
    lease_token = NULL,
    lease_expires_at = NULL,
    last_error = CASE WHEN %(delivered)s THEN NULL ELSE %(outcome)s END
FROM verdict AS v
WHERE e.id = v.id
RETURNING e.state;

-- name: webhook_events_next_due
-- Seconds until the next pending event is due (negative: one is due now; NULL: none pending).
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 AS seconds
FROM webhook_events
WHERE state = 'pending';

-- name: webhook_events_deliveries
-- A batch's webhook event and each of its attempts, oldest first (the webhook_deliveries view, under the caller's row-level security).
SELECT webhook_id, type, state, event_at, next_attempt_at, attempt, started_at, duration_ms,
       status_code, error, outcome
FROM webhook_deliveries
WHERE batch = %(public_id)s
ORDER BY attempt NULLS FIRST
LIMIT 1000;

-- name: webhook_events_retry
-- Send a batch's finished webhook again (its owner or an admin, under row-level security): pending and due now, tried for WEBHOOK_RETRY_FOR from now, same webhook-id and body; the state it had and whether it was retried within the last minute (then it is not retried again), or nothing if the batch has no event.
WITH event AS (
    -- FOR UPDATE: a deliverer recording an attempt at this moment goes first or after, never
    -- half-way; FOR SHARE of the batch: a delete at this moment too.
    SELECT e.id, e.state, coalesce(e.retried_at > now() - interval '1 minute', false) AS too_soon
    FROM webhook_events AS e
    JOIN batches AS b ON b.id = e.batch_id
    WHERE b.public_id = %(public_id)s AND b.deleted_at IS NULL
    FOR UPDATE OF e FOR SHARE OF b
), retried AS (
    UPDATE webhook_events AS e
    SET state = 'pending', finished_at = NULL, next_attempt_at = now(), retried_at = now(),
        attempts_before_retry = e.attempts
    FROM event
    WHERE e.id = event.id AND event.state <> 'pending' AND NOT event.too_soon
)
SELECT state AS was, too_soon FROM event;

-- name: webhook_events_pending_count
-- How many webhooks one client has waiting, what WEBHOOK_MAX_PENDING bounds: its processing batches with a callback_url (their event comes when they finish) and its events not yet delivered or given up.
SELECT (SELECT count(*) FROM batches
        WHERE client = %(client)s AND status = 'processing' AND callback_url IS NOT NULL)
     + (SELECT count(*) FROM webhook_events AS e JOIN batches AS b ON b.id = e.batch_id
        WHERE e.state = 'pending' AND b.client = %(client)s) AS pending;
