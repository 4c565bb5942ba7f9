-- name: web_sessions_insert
-- Sign a browser in: the hash of its new cookie id, who it is, until when.
INSERT INTO web_sessions (id_hash, signed_in_as, credential_hash, expires_at)
VALUES (%(id_hash)s, %(signed_in_as)s, %(credential_hash)s,
        now() + make_interval(secs => %(lifetime_seconds)s));

-- name: web_sessions_get
-- The live session a cookie id's hash names, if any.
SELECT signed_in_as, credential_hash, created_at, expires_at
FROM web_sessions
WHERE id_hash = %(id_hash)s AND expires_at > now();

-- name: web_sessions_delete
-- Sign a browser out (logout), or end its previous session as it signs in again.
DELETE FROM web_sessions WHERE id_hash = %(id_hash)s;

-- name: web_sessions_delete_expired
-- Forget sessions past their expiry (run at each sign-in; reads web_sessions_expires_idx).
DELETE FROM web_sessions WHERE expires_at <= now();

-- name: web_sessions_keep_newest
-- Keep a credential's newest sessions only, up to the cap (reads web_sessions_credential_idx).
DELETE FROM web_sessions
WHERE credential_hash = %(credential_hash)s
  AND id_hash IN (SELECT id_hash
                  FROM web_sessions
                  WHERE credential_hash = %(credential_hash)s
                  ORDER BY created_at DESC, id_hash
                  OFFSET %(keep)s);

-- name: web_sessions_lock_credential
-- Hold one credential's sign-ins one after another until commit, so each trims the sessions the last one left (the per-key cap holds under racing sign-ins).
SELECT pg_advisory_xact_lock(hashtextextended(encode(%(credential_hash)s, 'hex'), 7240113902));
