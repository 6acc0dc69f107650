-- Per-user ExtractStartDate (issue 6, SSSE's User Map field): appointments and tasks that
-- end or are due before it are left out of this user's sync; NULL: the filter plugin's own
-- (global) setting applies.
ALTER TABLE users ADD COLUMN extract_start_date TEXT;
