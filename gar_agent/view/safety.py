"""Which files the viewer may read: only those under the served folder.

Every path a request names is relative to the served root. An absolute path, a `..` that climbs
out, or a symlink that points out resolves outside the root and is refused (the server answers 404,
so a probe learns nothing about what exists elsewhere).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class OutsideRoot(LookupError):
    """A requested path that does not name a file or folder inside the served root."""


def inside(root: Path, relative: str) -> Path:
    """The resolved path of `relative` under `root`; OutsideRoot if it leaves it or does not exist."""
    if not isinstance(relative, str) or "\x00" in relative or "\\" in relative:
        raise OutsideRoot(relative)
    rel = PurePosixPath(relative)
    if rel.is_absolute() or (rel.parts and rel.parts[0].endswith(":")):  # /etc/passwd, C:...
        raise OutsideRoot(relative)
    if ".." in rel.parts:  # no run is named with `..`: refuse it even where it would climb back in
        raise OutsideRoot(relative)
    base = root.resolve()
    target = (base / rel).resolve()  # follows symlinks: a link pointing out lands outside `base`
    if target != base and base not in target.parents:
        raise OutsideRoot(relative)
    if not target.exists():
        raise OutsideRoot(relative)
    return target


def relative_ref(root: Path, path: Path) -> str:
    """How the page names a path under the root (POSIX, '.' for the root itself)."""
    try:  # lexically: a symlinked folder keeps its own name (resolving it could lead out)
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    return "." if rel in ("", ".") else rel
