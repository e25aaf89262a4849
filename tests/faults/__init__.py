"""Process-level fault tests: real gateway processes, private PostgreSQL and Redis."""
