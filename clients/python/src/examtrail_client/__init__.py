"""Examtrail client: order, wait for, download and verify test event exports; ingest events."""
