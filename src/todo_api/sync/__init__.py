"""Keeping clients in step: the change feed, live events, reminders and idempotent writes."""
