"""The files the scheduler parses: one per kind of pipeline."""
