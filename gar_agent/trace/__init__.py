"""Traces: the saved-run schema, its store, and replay from a recording."""
