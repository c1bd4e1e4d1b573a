"""The audit trail: an append-only log of who did what, written with the action itself."""
