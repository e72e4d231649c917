"""Rules with no HTTP in them: the booking lifecycle, best-fit bed choice, ranking."""
