"""Who is calling: token verification, the current user, first-use user rows."""
