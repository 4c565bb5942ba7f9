-- name: runners_heartbeat
-- Register a runner or beat its heartbeat, adding the work it finished since the last beat.
INSERT INTO runners AS r (name, host, pid, scorer, chunks_done, rows_done)
VALUES (%(name)s, %(host)s, %(pid)s, %(scorer)s, %(chunks)s, %(rows)s)
ON CONFLICT (name) DO UPDATE
SET heartbeat_at = now(),
    chunks_done = r.chunks_done + excluded.chunks_done,
    rows_done = r.rows_done + excluded.rows_done;

-- name: runners_expire
-- Forget runners whose heartbeat stopped (killed, frozen or cut off).
DELETE FROM runners
WHERE heartbeat_at < now() - make_interval(secs => %(expiry_seconds)s)
RETURNING name;

-- name: runners_remove
-- A runner leaving cleanly takes its entry with it.
DELETE FROM runners WHERE name = %(name)s;
