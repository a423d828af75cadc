"""What every node gets besides the state: the chat model, the decoded media, the prompts.

Passed as LangGraph's run context, so nodes never import an adapter: any BaseChatModel, a replay
of a recording or a served model stands in without touching a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from gar_agent.media import Media
from gar_agent.prompts import PromptSet


@dataclass
class GarContext:
    """Run-time resources (not state: they are not saved, and a replay supplies its own)."""

    model: BaseChatModel
    """The chat model that answers every stage."""
    media: Media
    """The decoded image and audio, and the bytes the model is shown."""
    prompts: PromptSet
    """The prompt templates (a researcher's edited set, or the shipped one)."""
