-- The /batches list pages on (created_at, public_id) instead of (created_at, id).
-- Its cursor is signed, not encrypted, and id is a sequence shared by every
-- client: a client that compared the ids in two of its own cursors could count
-- the other clients' uploads in between. public_id is random and the caller's
-- own. The list's two indexes change their tie-breaker with it (the batches
-- table holds one row per batch: rebuilding them is quick).
DROP INDEX batches_created_at_idx;
CREATE INDEX batches_created_at_idx ON batches (created_at DESC, public_id DESC);
DROP INDEX batches_client_created_idx;
CREATE INDEX batches_client_created_idx ON batches (client, created_at DESC, public_id DESC);
