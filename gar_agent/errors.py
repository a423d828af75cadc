"""The one base class of errors a user can fix (bad input, a missing file, a wrong option).

A leaf module: everything may import it, it imports nothing of ours. The CLI prints such an error
as one `gar: error: ...` line and exits 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Something the user can fix; the message is one line: what, where, what to do."""


class BackendError(UserError):
    """A --backend value (or its options) that does not give a chat model."""
