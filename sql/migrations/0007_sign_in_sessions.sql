-- Browser sign-in without the token in a cookie: the cookie holds a random
-- session id, and only its hash is stored here, with who is signed in. Failed
-- sign-ins are counted per client address for the rate limit
-- (webapp.sessions, webapp.login_limit).
CREATE TABLE web_sessions (
    id_hash          bytea PRIMARY KEY,
    signed_in_as     text NOT NULL,
    credential_hash  bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);
COMMENT ON TABLE web_sessions IS
    'Signed-in browsers, one row per /login; /logout deletes the row. The cookie holds a random id '
    'that only this row''s hash names, never a token.';
COMMENT ON COLUMN web_sessions.id_hash IS
    'SHA-256 of the random id in the browser''s cookie; the id itself is stored nowhere, so reading '
    'this table signs no one in.';
COMMENT ON COLUMN web_sessions.signed_in_as IS
    'Who is signed in: API_TOKEN for the holder of the API token (an API key''s name, once keys exist).';
COMMENT ON COLUMN web_sessions.credential_hash IS
    'SHA-256 of the credential given at sign-in; the session holds only while that credential is '
    'still accepted (a changed API_TOKEN ends every session made with the old one).';
COMMENT ON COLUMN web_sessions.created_at IS 'When the browser signed in.';
COMMENT ON COLUMN web_sessions.expires_at IS
    'created_at + SESSION_LIFETIME; later the row no longer signs anyone in, and the next sign-in '
    'deletes it.';
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

CREATE TABLE login_failures (
    client_address   text PRIMARY KEY,
    failures         integer NOT NULL CHECK (failures > 0),
    window_ends_at   timestamptz NOT NULL
);
COMMENT ON TABLE login_failures IS
    'Wrong tokens per client address (login form or Authorization header), for the sign-in rate '
    'limit: past LOGIN_MAX_FAILURES, every sign-in from that address is refused until window_ends_at.';
COMMENT ON COLUMN login_failures.client_address IS
    'The peer address the web server saw (behind a proxy: the proxy''s).';
COMMENT ON COLUMN login_failures.failures IS 'Wrong tokens since the window started.';
COMMENT ON COLUMN login_failures.window_ends_at IS
    'First failure + LOGIN_FAILURE_WINDOW; a failure after it starts a new window.';
CREATE INDEX login_failures_window_idx ON login_failures (window_ends_at);
