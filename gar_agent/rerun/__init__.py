"""Re-running a saved run: replay and fork (replay.py), and what differs between two runs (diff.py).

It sits above the run path (gar_agent/run.py): a replay is a run whose model answers from a
recording. Before this package these were gar_agent.trace.replay and gar_agent.trace.diff. (Not
named `replay`: `gar_agent.replay` is the notebook API's function, `gar.replay(run, ...)`.)
Nothing is imported here, so `trace diff` and the viewer load no model stack for a diff.
"""
