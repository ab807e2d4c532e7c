-- The caseload (issue 8, homeward bench api) finds each patient's current hub
-- enrolment by patient; enrolment had an index by hub only, so every caseload row
-- scanned the whole table (2,000 rows per row on a 2,000-patient ward).
CREATE INDEX IF NOT EXISTS enrolment_patient_idx ON enrolment (patient_id, valid_from DESC);
