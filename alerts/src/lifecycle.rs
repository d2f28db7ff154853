//! The alert lifecycle: one open alert per (rule, entity), hold time, escalation, storm control.
