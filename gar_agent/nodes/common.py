"""Small pieces the stage nodes share: prompt values and the per-source state update."""

from __future__ import annotations

import json

from gar_agent.rules import scale_box
from gar_agent.state import Box, ImageInfo, SourceRecord


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


def report(record: SourceRecord) -> dict:
    """A source node's update: the branch's record, and the same record for the run's join."""
    return {"source": record, "sources": [record]}
