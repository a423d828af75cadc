"""The sha256 of a file: how traces, graphs, imported prompts, videos and the viewer name a file's content.

A leaf (imports nothing of ours), so every layer may use it. The file is read in 1 MiB blocks: a
video or a long audio file is hashed without being held in memory whole, and the digest is the same
as hashing its bytes at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the file's bytes; OSError (FileNotFoundError, IsADirectoryError...) as open raises it."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
