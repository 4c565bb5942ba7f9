-- Wrong credentials are counted per client address and credential family, so
-- guesses at API_TOKEN never lock out a client key from the same address; the
-- rows counted so far were all guesses at API_TOKEN. Sessions are capped per
-- key, which reads them by credential (webapp.auth.login_limit,
-- webapp.auth.sessions).
ALTER TABLE login_failures
    ADD COLUMN family text NOT NULL DEFAULT 'api_token' CHECK (family IN ('api_token', 'client_key'));
ALTER TABLE login_failures ALTER COLUMN family DROP DEFAULT;
ALTER TABLE login_failures DROP CONSTRAINT login_failures_pkey;
ALTER TABLE login_failures ADD PRIMARY KEY (client_address, family);
COMMENT ON TABLE login_failures IS
    'Wrong credentials per client address and credential family (login form or Authorization '
    'header), for the sign-in rate limit: past LOGIN_MAX_FAILURES, that family''s sign-ins from '
    'that address are refused until window_ends_at (a valid client key never is).';
COMMENT ON COLUMN login_failures.client_address IS
    'The client''s address (from a proxy in FORWARDED_ALLOW_IPS, the one it forwards); an IPv6 '
    'client''s /64.';
COMMENT ON COLUMN login_failures.failures IS 'Wrong credentials since the window started.';
COMMENT ON COLUMN login_failures.family IS
    'What the wrong credential was a guess at: api_token (anything not shaped like a client key) '
    'or client_key.';

COMMENT ON TABLE web_sessions IS
    'Signed-in browsers, one row per /login, which also ends the browser''s previous session and '
    'keeps SESSIONS_PER_KEY per key, the oldest going first; /logout deletes the row. The cookie '
    'holds a random id that only this row''s hash names, never a token.';
CREATE INDEX web_sessions_credential_idx ON web_sessions (credential_hash, created_at);
