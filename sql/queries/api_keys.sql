-- name: api_keys_insert
-- Record a new key: its name, the hash of the key (never the key) and its role.
INSERT INTO api_keys (name, key_hash, role) VALUES (%(name)s, %(key_hash)s, %(role)s)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: api_keys_list
-- Every key, oldest first, with when it was last used; never the key.
SELECT name, role, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, name;

-- name: api_keys_revoke
-- Refuse a key from the next request on (its batches keep their owner's name).
UPDATE api_keys SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL RETURNING name;

-- name: api_keys_get_by_name
-- One key by its name, revoked or not.
SELECT name, role, created_at, last_used_at, revoked_at FROM api_keys WHERE name = %(name)s;

-- name: api_keys_authenticate
-- The key a hash names, if any (revoked ones too, so the answer can say so), and whether any key exists at all; stamps last_used_at at most once a minute.
WITH found AS (
    SELECT name, role, revoked_at FROM api_keys WHERE key_hash = %(key_hash)s
), touched AS (
    -- At most one write a minute per key, however busy it is.
    UPDATE api_keys SET last_used_at = now()
    WHERE key_hash = %(key_hash)s AND revoked_at IS NULL
      AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT (SELECT name FROM found) AS name,
       (SELECT role FROM found) AS role,
       (SELECT revoked_at IS NOT NULL FROM found) AS revoked,
       EXISTS (SELECT 1 FROM api_keys) AS keys_exist;

-- name: api_keys_runner_sees_every_row
-- Whether this login bypasses the row-level security of batches (superuser, BYPASSRLS, or the tables' owner or a member of the owner's role, with its privileges), as runners must; true before the migrations made the table.
SELECT coalesce(
    (SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(r.oid, c.relowner, 'USAGE')
     FROM pg_class AS c, pg_roles AS r
     WHERE c.oid = to_regclass('batches') AND r.rolname = current_user),
    true) AS sees_every_row;
