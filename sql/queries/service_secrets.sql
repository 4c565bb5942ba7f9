-- name: service_secrets_get
-- Read a shared secret by name.
SELECT value FROM service_secrets WHERE name = %(name)s;
