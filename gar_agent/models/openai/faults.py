"""Backend faults: failures of the serving side, not of the sample being run.

A model call that fails records `"<ExceptionName>: <message>"` (gar_agent.calls.ask), and the run's
error quotes it. A failure raised as one of these classes says "the server, not this clip": `gar
eval` runs such a sample again when the same command is run again, without `--retry-failed`
(which also retries failures that would repeat, such as an unreadable answer).
"""

from __future__ import annotations

import re


class BackendFault(RuntimeError):
    """The serving side failed; running the same sample again later may succeed."""


class BackendUnavailable(BackendFault):
    """Still a 429, 5xx, timeout or connection error after the last retry."""


class MalformedResponse(BackendFault):
    """The server answered with a body that is not a chat completion."""


class BackendRefused(BackendFault):
    """The server refused every request of this kind (bad key, unknown model): fix the setup, run again."""


FAULTS = tuple(c.__name__ for c in (BackendFault, BackendUnavailable, MalformedResponse, BackendRefused))
_MARK = re.compile(r"\b(" + "|".join(FAULTS) + r"): ")


def is_backend_fault(error: str | None) -> bool:
    """Whether a recorded error (a run's or a call's) comes from a backend fault."""
    return error is not None and _MARK.search(error) is not None
