"""Clinical rules as data, evaluators, alert lifecycle, routing, escalation, notifications."""
