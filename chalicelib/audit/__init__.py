"""The audit trail: who did what, when, to which patient record (docs/audit.md)."""
