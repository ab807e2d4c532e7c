-- An accepted hand-over of an alert moves it to the receiving team at once (the API);
-- the alert worker then enters the receiving team's escalation at its first level and
-- marks the hand-over applied (alerts/handovers.py: the routing tree is the worker's).
ALTER TABLE handover ADD COLUMN applied_at timestamptz;
CREATE INDEX handover_to_apply_idx ON handover (decided_at)
    WHERE state = 'accepted' AND kind = 'alert' AND applied_at IS NULL;
