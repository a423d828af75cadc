"""Draw boxes on the image: initial (thin) and final (thick) per source, labelled by sound."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gar_agent.result import RunResult

COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def draw_boxes(rgb: np.ndarray, items: list[dict]) -> np.ndarray:
    """Draw items `{"box", "initial_box"?, "label", "dashed"?}` onto a copy of an RGB image."""
    out = rgb.copy()
    thick = max(2, round(min(out.shape[:2]) / 160))
    for i, item in enumerate(items):
        color = item.get("color") or COLORS[i % len(COLORS)]
        if item.get("initial_box"):
            x1, y1, x2, y2 = item["initial_box"]
            cv2.rectangle(out, (x1, y1), (x2, y2), color, 1, cv2.LINE_AA)
        x1, y1, x2, y2 = item["box"]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        label = item.get("label", "")
        if label:
            scale = max(0.4, min(out.shape[:2]) / 600)
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = max(y1, th + base + 2)
            cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 4, ty), color, -1)
            cv2.putText(
                out, label, (x1 + 2, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
            )
    return out


def save_overlay(rgb: np.ndarray, items: list[dict], path: str | Path) -> Path:
    """Write the drawing as PNG/JPEG (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(draw_boxes(rgb, items), cv2.COLOR_RGB2BGR))
    return path


def source_label(index: int, audio_class: str) -> str:
    """A box's label, numbered as the tables number sources (source 0, source 1, ...)."""
    return f"source {index}: {audio_class}"


def result_items(result: RunResult) -> list[dict]:
    """Overlay items for a run's result: initial and final box, labelled by sound."""
    return [
        {
            "box": s.box,
            "initial_box": s.initial_box,
            "label": source_label(i, s.audio_class) + (" (refined)" if s.refined else ""),
        }
        for i, s in enumerate(result.sources)
    ]
