"""Retention, erasure and legal hold: what is deleted, when, and what may not be."""
