-- Intentionally changes nothing: this version number is held for a migration
-- from another branch, so that the versions stay gapless. Drop this file when
-- that migration takes the number.
SELECT 1;
