"""Tasks: the one resource of this API."""
