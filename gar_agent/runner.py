"""The old home of `run_clip`: it now lives, async at its core, in gar_agent/run.py (one module of the run path).

Kept so that `from gar_agent.runner import run_clip` (scripts, notebooks) keeps working.
"""

from gar_agent.run import STOP, RunOutcome, Step, arun_clip, astream_run, run_clip, stream_run

__all__ = ["STOP", "RunOutcome", "Step", "arun_clip", "astream_run", "run_clip", "stream_run"]
