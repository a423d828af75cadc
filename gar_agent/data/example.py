"""`gar data example DIR`: a tiny synthetic benchmark in one benchmark's `--gt` format, and scripted answers.

So that `gar eval run` can be tried, and its folder read, with no dataset and no model: each
sample's frame shows drawn instruments (the demo's violin and drum) on a plain stage, its audio is
their sounds, the GT file holds their boxes in the chosen benchmark's format, and `answers.json`
(for `--backend scripted:FILE`) answers every sample's calls. The answers are SCRIPTED, written
here, not a model's: sample i's Generate box is exact (i % 3 == 0), a little off (1), or further
off with a low audio confidence (2): the gate sends that one to Refine, which answers the exact box,
and the clamp (each side moves at most 8% of the frame's shorter side) brings it halfway. Any other
Refine (a graph without the gate) answers `{"changed": false}`: the box is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from gar_agent.demo import SR, draw_drum, draw_violin, drum_sound, stage, violin_sound
from gar_agent.eval.datasets import DATASETS
from gar_agent.eval.gt_formats import GT_FORMATS

SECONDS = 2.0
SIDE = 224  # a frame's height, and a solo frame's width
DUET_WIDTH = {"music-duet": 320, "vggss-duet": 448}  # vggss-duet: two 224x224 clips side by side
CLASSES = {  # (violin, drum), as each benchmark spells its classes
    "vggss-single": ("playing violin, fiddle", "playing drum kit"),
    "vggss-duet": ("playing violin, fiddle", "playing drum kit"),
    "music-solo": ("violin", "drum"),
    "music-duet": ("violin", "drum"),
}
ANSWERS_FILE = "answers.json"
MAX_SAMPLES = 1000


@dataclass
class Example:
    """What `write_example` wrote: the folders and files `gar eval run` takes, and the sample ids."""

    frames: Path
    audio: Path
    gt: Path
    answers: Path
    ids: list[str]


def _vote(av: float) -> dict:
    return {
        "anchor_votes": [{"anchor": "body", "score": 0.9}],
        "role_tags": ["body"],
        "av_consistency": av,
        "keep": True,
    }


def _shifted(box: list[int], dx: int, dy: int, width: int, height: int) -> list[int]:
    """The box moved by (dx, dy), kept inside the frame (its size kept)."""
    w, h = box[2] - box[0], box[3] - box[1]
    x1 = min(max(box[0] + dx, 0), width - w)
    y1 = min(max(box[1] + dy, 0), height - h)
    return [x1, y1, x1 + w, y1 + h]


def _norm(box: list[int], width: int, height: int) -> list[float]:
    return [round(box[0] / width, 6), round(box[1] / height, 6), round(box[2] / width, 6), round(box[3] / height, 6)]


def _xywh(box: list[float]) -> list[float]:
    return [box[0], box[1], round(box[2] - box[0], 6), round(box[3] - box[1], 6)]


def _draw(benchmark: str, rng: np.random.Generator, index: int) -> tuple[np.ndarray, list[list[int]], list[int]]:
    """The frame, its objects' pixel boxes and which instrument each is (0 violin, 1 drum)."""
    if benchmark in DUET_WIDTH:
        width = DUET_WIDTH[benchmark]
        img = stage(width, SIDE)
        half = width // 2
        # the violin somewhere in the left half, the drum in the right one (never overlapping)
        violin = draw_violin(img, int(rng.integers(45, half - 45)), int(rng.integers(72, SIDE - 76)))
        drum = draw_drum(img, int(rng.integers(half + 48, width - 48)), int(rng.integers(48, SIDE - 48)))
        return img, [violin, drum], [0, 1]
    img = stage(SIDE, SIDE)
    if index % 2 == 0:
        return img, [draw_violin(img, int(rng.integers(45, SIDE - 45)), int(rng.integers(72, SIDE - 76)))], [0]
    return img, [draw_drum(img, int(rng.integers(48, SIDE - 48)), int(rng.integers(48, SIDE - 48)))], [1]


def _gt_entry(benchmark: str, sid: str, boxes: list[list[float]], classes: list[str]) -> dict:
    if benchmark == "vggss-single":
        return {"file": sid, "class": classes[0], "bbox": [boxes[0]]}
    if benchmark == "music-solo":
        return {"file": sid, "class": classes[0], "bbox": _xywh(boxes[0])}
    convert = _xywh if benchmark == "music-duet" else list
    return {
        "file": sid,
        "class_src1": classes[0],
        "bbox_src1": convert(boxes[0]),
        "class_src2": classes[1],
        "bbox_src2": convert(boxes[1]),
    }


def _answers(boxes: list[list[int]], classes: list[str], kind: int, width: int, height: int) -> dict:
    """One sample's scripted answers: Generate exact (kind 0), a little off (1), far off and refined (2)."""
    shift = {0: (0, 0), 1: (18, 12), 2: (36, 30)}[kind]
    given = [_shifted(b, *shift, width, height) for b in boxes]
    confidence = 0.4 if kind == 2 else 0.9  # below every benchmark's tau_audio: the gate sends it to Refine
    words = [c.split(",")[0] for c in classes]
    if len(boxes) == 1:
        audio = {"audio_class": classes[0], "audio_confidence_score": confidence}
        generate = {"bbox": given[0], "description": f"the {words[0]}"}
    else:
        audio = {"audio_classes": classes, "audio_confidence_scores": [confidence] * len(classes)}
        generate = {"bboxes": given, "descriptions": [f"the {w}" for w in words]}
    answers = {"audio": [audio], "generate": [generate]}
    if kind == 2:
        answers["refine"] = {
            str(i): [
                {"bbox": b, "changed": True, "ops": None, "refined_description": f"The {words[i]} makes the sound."}
            ]
            for i, b in enumerate(boxes)
        }
    return answers


def write_example(directory: str | Path, benchmark: str = "vggss-single", samples: int = 6, seed: int = 0) -> Example:
    """Write DIR/frames, DIR/audio, DIR/<benchmark's GT file> and DIR/answers.json; deterministic per seed."""
    if benchmark not in DATASETS:
        raise ValueError(f"unknown benchmark {benchmark!r}: use one of {', '.join(DATASETS)}")
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be between 1 and {MAX_SAMPLES}, got {samples}")
    root = Path(directory)
    frames, audio = root / "frames", root / "audio"
    frames.mkdir(parents=True, exist_ok=True)
    audio.mkdir(parents=True, exist_ok=True)
    sounds = (violin_sound(SECONDS), drum_sound(SECONDS))
    names = CLASSES[benchmark]
    entries, runs, ids = [], {}, []
    for i in range(samples):
        rng = np.random.default_rng([seed, i])
        sid = f"ex{i:03d}a__ex{i:03d}b" if benchmark == "vggss-duet" else f"ex{i:03d}"
        img, boxes, which = _draw(benchmark, rng, i)
        height, width = img.shape[:2]
        cv2.imwrite(str(frames / f"{sid}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        mix = sum((sounds[w] for w in which), np.zeros_like(sounds[0])) / len(which)
        sf.write(str(audio / f"{sid}.wav"), mix.astype(np.float32), SR, subtype="PCM_16")
        classes = [names[w] for w in which]
        entries.append(_gt_entry(benchmark, sid, [_norm(b, width, height) for b in boxes], classes))
        runs[sid] = _answers(boxes, classes, i % 3, width, height)
        ids.append(sid)
    gt = root / GT_FORMATS[benchmark].file
    gt.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    # every run's votes agree (av 0.85, keep): only the audio confidence decides who is refined. A
    # source the gate keeps is refined only by another graph (`gar eval replay --graph no_gate`):
    # its Refine keeps the box, so such a replay runs instead of failing on an unscripted stage
    script = {"analyze": [_vote(0.85)] * 5, "refine": [{"changed": False}], "runs": runs}
    answers = root / ANSWERS_FILE
    answers.write_text(json.dumps(script, indent=1) + "\n", encoding="utf-8")
    return Example(frames=frames, audio=audio, gt=gt, answers=answers, ids=ids)
