-- The FHIR push channel of the notification outbox (alerts/fhir_push.py, docs/alerts.md):
-- a notification may now go to a FHIR server as a transaction Bundle.
ALTER TABLE notification DROP CONSTRAINT notification_channel_check,
    ADD CONSTRAINT notification_channel_check
        CHECK (channel IN ('dashboard', 'email', 'webhook', 'fhir'));
