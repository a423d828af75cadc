"""gar-agent: GAR-SSL sound source localization as an inspectable LangGraph workflow.

The notebook API (gar_agent.api) is re-exported here: `import gar_agent as gar; gar.load_eval(...)`.
It is imported on first use, so `import gar_agent` (and the CLI's start) stays light.
"""

from gar_agent.version import __version__

_API = ("load_trace", "load_eval", "replay", "run_clip", "Run", "Evaluation", "Replay")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from gar_agent import api

        return getattr(api, name)
    raise AttributeError(f"module 'gar_agent' has no attribute {name!r}")


def __dir__() -> list[str]:
    # a notebook's completion (`gar.<Tab>`) lists dir(): name the API imported on first use too
    return sorted({*globals(), *__all__})
