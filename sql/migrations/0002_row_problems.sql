-- 0002: rows that cannot be scored are set aside instead of failing the upload.
--
-- total_count counts every data row read; invalid_count those set aside.
-- A batch is complete when processed_count + invalid_count = total_count.

ALTER TABLE batches ADD COLUMN invalid_count integer NOT NULL DEFAULT 0 CHECK (invalid_count >= 0);
ALTER TABLE batches DROP CONSTRAINT batches_check;
ALTER TABLE batches ADD CONSTRAINT batches_counts_within_total
    CHECK (processed_count + invalid_count <= total_count);
COMMENT ON COLUMN batches.invalid_count IS
    'Data rows set aside as invalid (see batch_row_errors); never scored.';
COMMENT ON COLUMN batches.total_count IS 'Data rows read from the file, valid or not.';

ALTER TABLE batch_rows ADD COLUMN line_number integer;
COMMENT ON COLUMN batch_rows.line_number IS 'Line of the file where the row starts (the header is line 1).';
-- During an upload a set-aside row is staged like the others, in the same
-- COPY, with row_number = -error_number and its problem; the upload moves it
-- to batch_row_errors before it commits, so committed staging rows are all
-- positive. (One COPY stream, constant memory, however many rows are bad.)
ALTER TABLE batch_rows ADD COLUMN problem text;
ALTER TABLE batch_rows DROP CONSTRAINT batch_rows_row_number_check;
ALTER TABLE batch_rows ADD CONSTRAINT batch_rows_numbering
    CHECK (row_number <> 0 AND (row_number > 0) = (problem IS NULL));
COMMENT ON COLUMN batch_rows.problem IS
    'reason<TAB>detail of a set-aside row while its upload is in progress; NULL otherwise.';
ALTER TABLE batch_results ADD COLUMN line_number integer;
COMMENT ON COLUMN batch_results.line_number IS 'Line of the file where the row starts (the header is line 1).';

CREATE TABLE batch_row_errors (
    batch_id      bigint NOT NULL,
    error_number  integer NOT NULL CHECK (error_number > 0),
    line_number   integer NOT NULL,
    client_id     text,
    reason        text NOT NULL
                  CHECK (reason IN ('wrong_field_count', 'empty_text', 'text_too_long', 'nul_character')),
    detail        text NOT NULL,
    PRIMARY KEY (batch_id, error_number)
);
COMMENT ON TABLE batch_row_errors IS
    'Rows of an upload that were set aside and not scored, with the line and the reason.';
COMMENT ON COLUMN batch_row_errors.error_number IS 'Position among the batch''s set-aside rows, from 1.';
COMMENT ON COLUMN batch_row_errors.reason IS
    'wrong_field_count, empty_text, text_too_long or nul_character.';

-- Name the table-level checks of 0001 for what they guard (psql's \d shows them).
ALTER TABLE batches RENAME CONSTRAINT batches_check1 TO batches_sentiment_counts_add_up;
ALTER TABLE batches RENAME CONSTRAINT batches_check2 TO batches_completed_at_iff_completed;
ALTER TABLE chunks RENAME CONSTRAINT chunks_check TO chunks_row_range;
ALTER TABLE chunks RENAME CONSTRAINT chunks_check1 TO chunks_lease_iff_claimed;
