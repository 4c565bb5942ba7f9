-- After a retry (POST /batch/<id>/webhooks/retry), backoff counts the attempts
-- made since, not every attempt of the event: a webhook given up after a day
-- (about 33 attempts) would otherwise wait an hour after the retry's first
-- failure. And a retry is refused (429) within a minute of the last one, so a
-- client cannot have its webhook sent in a loop.
ALTER TABLE webhook_events ADD COLUMN attempts_before_retry integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN webhook_events.attempts_before_retry IS
    'Attempts made before the last retry; backoff counts from the ones after it.';
GRANT UPDATE (attempts_before_retry) ON webhook_events TO sentiment_web, sentiment_web_admin;
COMMENT ON FUNCTION webhook_events_notify() IS
    'NOTIFY webhook_events for each new outbox row, and for each one sent again (retried_at set).';
COMMENT ON COLUMN webhook_secrets.previous_secret IS
    'The secret this one replaced: webhooks are signed with it too until previous_until; NULL then '
    'means WEBHOOK_SECRET (the key''s first own secret replaced it).';
