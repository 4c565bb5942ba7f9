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
-- The runners' alone, as webhook_secrets.
REVOKE ALL ON webhook_turns FROM sentiment_web, sentiment_web_admin;
