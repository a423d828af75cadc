"""gar_agent.hashing.file_sha256: the one way a file's content is named (traces, graphs, prompts, videos, viewer)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from gar_agent.hashing import file_sha256

PACKAGE = Path(__file__).resolve().parents[1] / "gar_agent"


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) * 2 + 7])
def test_the_digest_is_that_of_the_whole_file_across_block_edges(tmp_path, size):
    data = bytes(i * 31 % 251 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_a_missing_file_raises_what_open_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "absent.wav")
    with pytest.raises(IsADirectoryError):
        file_sha256(tmp_path)


def test_no_module_hashes_a_file_its_own_way():
    # a private _sha256 per module drifted apart once (whole reads in some, blocks in others)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "_sha256":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "hashlib.sha256"
                and "read_bytes()" in ast.unparse(node)
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, f"hash files with gar_agent.hashing.file_sha256: {offenders}"
