-- JSON Lines uploads set rows aside for reasons of their own: a line that is
-- not JSON, JSON that is not an object, an object without the text's key, a
-- text or an id of the wrong JSON type, two keys naming one column.
ALTER TABLE batch_row_errors DROP CONSTRAINT batch_row_errors_reason_check;
ALTER TABLE batch_row_errors ADD CONSTRAINT batch_row_errors_reason_check
    CHECK (reason IN ('wrong_field_count', 'empty_text', 'text_too_long', 'nul_character', 'id_too_long',
                      'invalid_json', 'not_an_object', 'missing_text', 'wrong_type', 'duplicate_key'));
COMMENT ON COLUMN batch_row_errors.reason IS
    'wrong_field_count, empty_text, text_too_long, nul_character or id_too_long; for JSON Lines also '
    'invalid_json, not_an_object, missing_text, wrong_type or duplicate_key.';
