-- The columns of an uploaded file besides the text and the id are kept with
-- their rows: the batch names them once, each row holds their values.

ALTER TABLE batches ADD COLUMN field_names text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN batches.field_names IS
    'The uploaded file''s columns kept with each row (all but the text and the id), in file order; '
    'batch_inputs.fields holds their values in the same order.';

ALTER TABLE batch_inputs ADD COLUMN fields text[];
COMMENT ON COLUMN batch_inputs.fields IS
    'The values of the batch''s field_names in this row, in the same order; NULL when the file has '
    'no other columns, and for set-aside rows.';
