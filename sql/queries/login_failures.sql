-- name: login_failures_get
-- An address's failures in one credential family in its current window, and seconds until the
-- window ends.
SELECT failures,
       greatest(1, ceil(extract(epoch FROM window_ends_at - now())))::int AS retry_after_seconds
FROM login_failures
WHERE client_address = %(client_address)s AND family = %(family)s AND window_ends_at > now();

-- name: login_failures_record
-- Count one wrong credential of a family from an address: in its current window, or as the first
-- of a new one.
INSERT INTO login_failures AS f (client_address, family, failures, window_ends_at)
VALUES (%(client_address)s, %(family)s, 1, now() + make_interval(secs => %(window_seconds)s))
ON CONFLICT (client_address, family) DO UPDATE
SET failures = CASE WHEN f.window_ends_at > now() THEN f.failures + 1 ELSE 1 END,
    window_ends_at = CASE WHEN f.window_ends_at > now() THEN f.window_ends_at
                          ELSE excluded.window_ends_at END
RETURNING failures,
          greatest(1, ceil(extract(epoch FROM window_ends_at - now())))::int AS retry_after_seconds;

-- name: login_failures_delete_expired
-- Forget windows that ended (run with each recorded failure; reads login_failures_window_idx).
DELETE FROM login_failures WHERE window_ends_at <= now();
