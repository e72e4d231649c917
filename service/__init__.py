"""Places of Safety: the national booking service for safe-stay beds."""
