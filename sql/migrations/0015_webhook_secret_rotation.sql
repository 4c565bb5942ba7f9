-- A key's webhook secret can be replaced without a receiver missing a webhook:
-- for WEBHOOK_SECRET_OVERLAP after `keys webhook-secret`, its webhooks carry two
-- signatures (Standard Webhooks allows several, space-separated), one with the
-- new secret and one with the old, so a receiver can switch whenever it likes
-- within that time.
ALTER TABLE webhook_secrets
    ADD COLUMN previous_secret text CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]{32,}={0,2}$'),
    ADD COLUMN previous_until timestamptz;
COMMENT ON COLUMN webhook_secrets.previous_secret IS
    'The secret this one replaced: webhooks are signed with it too until previous_until.';
COMMENT ON COLUMN webhook_secrets.previous_until IS
    'When the previous secret stops signing: WEBHOOK_SECRET_OVERLAP after the replacement.';
