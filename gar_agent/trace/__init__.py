"""Traces: the saved-run schema and its store (typed read and write). Nothing here runs a graph:
turning a run into a trace is gar_agent/record.py, replay and fork are gar_agent/rerun/."""
