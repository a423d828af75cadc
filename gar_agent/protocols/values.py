"""Prompt values the stages share (protocol gar), used by the protocols and by a researcher's own nodes."""

from __future__ import annotations

import json

from gar_agent.rules import scale_box
from gar_agent.state import Box, ImageInfo, SourceState


def model_box(box: Box, image: ImageInfo) -> list[int]:
    """A box in image pixels, expressed in the model's coordinate frame for a prompt."""
    return [int(round(v)) for v in scale_box(box, (image.width, image.height), image.frame)]


def frame_values(image: ImageInfo) -> dict:
    """Prompt values describing the image as the model sees it."""
    w, h = image.frame
    return {"width": w, "height": h, "max_x": w - 1, "max_y": h - 1}


def classes_text(classes: list[str]) -> str:
    """The sound classes as a prompt phrase: "violin", "cello"."""
    return ", ".join(json.dumps(c) for c in classes)


def source_values(state: SourceState) -> dict:
    """Prompt values about the source and its peers, shared by Analyze and Refine (protocol gar)."""
    src, k = state.source, state.settings.sources
    everyone = sorted([src, *state.peers], key=lambda s: s.index)
    others = [f'"{p.audio_class}" at {model_box(p.box, state.image)}' for p in state.peers]
    return {
        **frame_values(state.image),
        "k": k,
        "source_number": src.index + 1,
        "audio_class": src.audio_class,
        "audio_confidence": f"{src.audio_confidence:.2f}",
        "audio_classes_text": classes_text([s.audio_class for s in everyone]),
        "box": model_box(src.box, state.image),
        "other_boxes": "; ".join(others) or "none",
    }
