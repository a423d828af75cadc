"""A small generated example (a duet) and the scripted answers the demo plays back.

The demo shows the whole graph without a GPU or model weights: its answers are SCRIPTED (some
deliberately messy, one vote unusable) so every parsing, voting, gating and clamping path is seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

WIDTH, HEIGHT = 330, 250  # sides deliberately not multiples of 28
SR = 16_000

SCRIPT = {
    "audio": ['{"audio_classes": ["violin", "drum"], "audio_confidence_scores": [0.92, "0.61"]}'],
    "generate": [
        "Here are the sounding objects:\n```json\n"
        '{"bboxes": [[38, 70, 128, 215], [205, 96, 300, 190]],\n'
        ' "descriptions": ["a brown violin standing upright on the left", "a round drum on the right"],}\n```'
    ],
    "analyze": {
        "0": [
            {
                "anchor_votes": [{"anchor": "violin body", "score": 0.9}, {"anchor": "f-holes", "score": 0.6}],
                "role_tags": ["Violin Body", "strings"],
                "av_consistency": 0.86,
                "keep": True,
            },
            {
                "anchor_votes": [{"anchor": "violin_body", "score": "0.8"}],
                "role_tags": ["violin-body"],
                "av_consistency": "0.8",
                "keep": "true",
            },
            "I think the box is fine. {'anchor_votes': [], 'role_tags': ['strings'], 'av_consistency': 0.9, 'keep': True}",
            "The violin is visible but I cannot produce the JSON.",
            {
                "anchor_votes": [{"anchor": "bow_on_strings", "score": 0.4}],
                "role_tags": ["strings"],
                "av_consistency": 1.3,
                "keep": False,
            },
        ],
        "1": [
            {
                "anchor_votes": [{"anchor": "drum head", "score": 0.7}],
                "role_tags": ["drum_head"],
                "av_consistency": 0.55,
                "keep": False,
            },
            {
                "anchor_votes": [{"anchor": "drum_head", "score": 0.5}, {"anchor": "drum shell", "score": 0.4}],
                "role_tags": ["drum head", "shell"],
                "av_consistency": 0.45,
                "keep": True,
            },
            {
                "anchor_votes": [{"anchor": "drum_head", "score": 0.6}],
                "role_tags": ["drum_head"],
                "av_consistency": 0.6,
                "keep": False,
            },
            {"anchor_votes": [], "role_tags": [], "av_consistency": 0.5, "keep": True},
            {
                "anchor_votes": [{"anchor": "sticks", "score": 0.2}],
                "role_tags": ["sticks"],
                "av_consistency": 0.4,
                "keep": False,
            },
        ],
    },
    "refine": {
        "1": [
            '{"bbox": [190, 80, 318, 205], "changed": true, "ops": {"type": "expand", "amount": 30},'
            ' "refined_description": "The drum on the right makes the beat. Its round head faces the viewer."}'
        ],
        "0": [
            '{"bbox": [38, 70, 128, 215], "changed": false, "ops": null,'
            ' "refined_description": "The violin on the left is playing."}'
        ],
    },
}


def stage(width: int, height: int) -> np.ndarray:
    """A plain backdrop (a soft gradient, BGR) that the drawn instruments stand out from."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([110 + 60 * y / height, 120 + 40 * x / width, 150 + 30 * y / height], -1).astype(np.uint8)


def draw_violin(img: np.ndarray, cx: int, cy: int) -> list[int]:
    """A violin-like shape (two body ellipses, a neck) centred at (cx, cy); returns its box [x1, y1, x2, y2]."""
    cv2.ellipse(img, (cx, cy + 30), (40, 42), 0, 0, 360, (40, 70, 140), -1)
    cv2.ellipse(img, (cx, cy - 30), (30, 34), 0, 0, 360, (40, 70, 140), -1)
    cv2.line(img, (cx, cy - 68), (cx, cy + 72), (20, 20, 20), 2)
    return [cx - 40, cy - 68, cx + 40, cy + 72]


def draw_drum(img: np.ndarray, cx: int, cy: int) -> list[int]:
    """A drum seen from the front (a rim and its head) centred at (cx, cy); returns its box."""
    cv2.circle(img, (cx, cy), 45, (60, 60, 200), -1)
    cv2.circle(img, (cx, cy), 38, (230, 230, 235), -1)
    return [cx - 45, cy - 45, cx + 45, cy + 45]


def violin_sound(seconds: float) -> np.ndarray:
    """A bowed-string tone: harmonics of 440 Hz with vibrato."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440 * (1 + 0.004 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return sum((np.sin(k * phase) / k for k in range(1, 6)), np.zeros_like(phase)) * 0.15


def drum_sound(seconds: float, seed: int = 0) -> np.ndarray:
    """A low drum hit every half second."""
    t = np.arange(int(seconds * SR)) / SR
    hits = np.zeros_like(t)
    rng = np.random.default_rng(seed)
    for start in np.arange(0, seconds, 0.5):
        i = int(start * SR)
        n = min(int(0.2 * SR), len(t) - i)
        env = np.exp(-np.arange(n) / (0.04 * SR))
        hits[i : i + n] += (np.sin(2 * np.pi * 90 * np.arange(n) / SR) + 0.3 * rng.standard_normal(n)) * env * 0.4
    return hits


def make_example(directory: str | Path) -> tuple[Path, Path, Path]:
    """Write demo.png, demo.wav and demo_script.json into `directory`; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A simple stage: a violin-like shape on the left, a drum on the right, a soft gradient.
    img = stage(WIDTH, HEIGHT)
    draw_violin(img, 82, 140)
    draw_drum(img, 252, 143)
    image = directory / "demo.png"
    cv2.imwrite(str(image), img)
    # Audio: a bowed-string tone and a drum hit every half second.
    audio = directory / "demo.wav"
    sf.write(audio, (violin_sound(3.0) + drum_sound(3.0)).astype(np.float32), SR)
    script = directory / "demo_script.json"
    script.write_text(json.dumps(SCRIPT, indent=2) + "\n")
    return image, audio, script
