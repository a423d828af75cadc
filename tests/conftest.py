"""Shared fixtures: a generated example clip, scripted chat models and the tiny Qwen2.5-Omni checkpoint."""

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


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2.5-Omni thinker checkpoint (seed 0), written once per session.

    One directory for every test module, so its weights load once per process (ChatQwenOmni shares
    loaded weights by path and settings); tests that need a changed checkpoint copy it first.
    """
    from gar_agent.models.tiny import build_tiny_checkpoint  # torch and transformers only when asked for

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


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
