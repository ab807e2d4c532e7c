-- A shift whose end is its start is a whole day (a 24-hour on-call), not an error.
ALTER TABLE team_shift DROP CONSTRAINT IF EXISTS team_shift_check;
