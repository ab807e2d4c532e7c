-- FHIR Bulk Data export jobs (server/fhir/export.py, docs/fhir.md).  A job fixes what
-- it exports when it is kicked off: the patients in the caller's scope (of one team for
-- a Group export), the resource types, _since, and the transaction time; its NDJSON
-- files are streamed from these rows when they are downloaded, never stored.
CREATE TABLE fhir_export (
    id               uuid PRIMARY KEY,
    clinician_id     bigint NOT NULL REFERENCES clinician(id),
    request          text NOT NULL,
    team_id          text REFERENCES team(id),
    types            text[] NOT NULL,
    since            timestamptz,
    transaction_time timestamptz NOT NULL,
    patient_ids      bigint[] NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    deleted_at       timestamptz
);
CREATE INDEX fhir_export_clinician_idx ON fhir_export (clinician_id, created_at DESC);
