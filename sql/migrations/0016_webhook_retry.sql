-- A batch's owner can have its finished webhook sent again (POST
-- /batch/<id>/webhooks/retry), e.g. after its receiver was down past
-- WEBHOOK_RETRY_FOR: the event is pending again, due now, with the same
-- webhook-id and body, and WEBHOOK_RETRY_FOR counts from the request. The web
-- roles may change only those columns, and row-level security keeps them to
-- their own batches' events; the NOTIFY wakes the runners' deliverers.
ALTER TABLE webhook_events ADD COLUMN retried_at timestamptz;
COMMENT ON COLUMN webhook_events.retried_at IS
    'When its owner last asked for it again (POST /batch/<id>/webhooks/retry); WEBHOOK_RETRY_FOR '
    'counts from then instead of from created_at.';
GRANT UPDATE (state, finished_at, next_attempt_at, retried_at) ON webhook_events
    TO sentiment_web, sentiment_web_admin;
CREATE TRIGGER webhook_events_notify_retry AFTER UPDATE OF retried_at ON webhook_events
    FOR EACH ROW EXECUTE FUNCTION webhook_events_notify();
