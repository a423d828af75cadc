"""Shared fixtures: a generated example clip and scripted chat models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gar_agent.demo import make_example
from gar_agent.media import load_media
from gar_agent.models.scripted import ScriptedChatModel

SHARED = Path(__file__).resolve().parents[2] / "shared"

# pytest-xdist workers export COLUMNS=80. Piped gar output honours COLUMNS (else 140 columns), so
# without this the tests that read tables would see a page narrower than any pipe gives them.
os.environ.pop("COLUMNS", None)


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The demo's generated duet: (image, audio, script)."""
    return make_example(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="session")
def media(example):
    """The example decoded once."""
    return load_media(example[0], example[1])


def vote(av=0.8, keep=True, tags=("body",), anchors=(("body", 0.9),)) -> str:
    """A well-formed analysis answer."""
    return json.dumps(
        {
            "av_consistency": av,
            "keep": keep,
            "role_tags": list(tags),
            "anchor_votes": [{"anchor": a, "score": s} for a, s in anchors],
        }
    )


def scripted(**stages) -> ScriptedChatModel:
    """A scripted model from stage answers given as keyword arguments."""
    return ScriptedChatModel(script=stages)


def write_script(path: Path, **stages) -> Path:
    """A script file for --backend scripted:FILE."""
    path.write_text(json.dumps(stages))
    return path
