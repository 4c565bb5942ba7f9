"""An upload's bytes on their way to rows: the request body streamed in pieces, gzip
(both ways), the text encodings accepted and their decoding, and the CSV reader."""
