-- A float as JSON text the way Python writes it, for the JSON that followers' rows are sent as.
CREATE FUNCTION json_number(value double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value IS NULL OR value IN ('NaN', 'Infinity', '-Infinity') THEN 'null'
            WHEN value = trunc(value) THEN value::text || '.0'
            ELSE value::text END;
COMMENT ON FUNCTION json_number(double precision) IS
    'A score as JSON text, as Python''s json writes it: shortest exact digits, and 1.0, 0.0 and -0.0 '
    'with their point, so a client reads the same float whether a row came from a page or a follow '
    'stream; null for NULL and for what JSON has no number for (NaN, infinities).';
