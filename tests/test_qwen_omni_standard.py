"""langchain-tests' standard unit tests for ChatQwenOmni (tiny checkpoint; no tools, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from gar_agent.models.qwen_omni import ChatQwenOmni

_TINY: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def _tiny_checkpoint(tiny_dir):
    # the standard suite reads its model's parameters from a property, not a fixture
    _TINY["dir"] = tiny_dir
    yield
    _TINY.clear()


class TestChatQwenOmniStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatQwenOmni]:
        return ChatQwenOmni

    @property
    def chat_model_params(self) -> dict:
        return {"model": str(_TINY["dir"]), "device": "cpu"}

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_audio_inputs(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
