-- Ids past MAX_ID_CHARS are set aside like texts past MAX_TEXT_CHARS, so one
-- row with a huge id cannot make a page (or a read of one) huge.
ALTER TABLE batch_row_errors DROP CONSTRAINT batch_row_errors_reason_check;
ALTER TABLE batch_row_errors ADD CONSTRAINT batch_row_errors_reason_check
    CHECK (reason IN ('wrong_field_count', 'empty_text', 'text_too_long', 'nul_character', 'id_too_long'));
COMMENT ON COLUMN batch_row_errors.reason IS
    'wrong_field_count, empty_text, text_too_long, nul_character or id_too_long.';
COMMENT ON COLUMN batch_row_errors.client_id IS
    'The id column of the row as given, its first 1,000 characters at most.';
