"""Todo API: a multi-user task service for a Better Auth frontend."""
