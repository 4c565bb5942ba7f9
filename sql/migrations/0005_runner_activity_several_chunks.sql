-- Runners claim several chunks of a batch at once (CLAIM_CHUNKS): the view
-- shows one row per chunk held, so say so.
COMMENT ON VIEW runner_activity IS
    'Who works on what, since when: every live runner with each chunk it holds (one row per chunk; '
    'a runner claims CLAIM_CHUNKS at a time), or one row without a chunk when it holds none.';
