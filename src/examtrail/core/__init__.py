"""Shared plumbing: settings, database, errors, security and time helpers."""
