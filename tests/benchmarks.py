"""Tiny generated benchmarks for `gar eval` tests, and the model that answers them.

The frames show white rectangles on black; `RectModel` (`--backend benchmarks:RectModel`, importable
because tests/ is on sys.path) answers with exactly the rectangles it sees, so every prediction is
known from the frame alone and the ground truth can be placed to give hand-computed cIoU / AP values.
A black frame has nothing to point at: the model raises, and that sample's run fails. `MINI` is the
five-sample benchmark of conftest's `mini` fixture; `ENTRIES` the eight of the replay and compare tests.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from gar_agent.cli.app import main

BACKEND = "benchmarks:RectModel"


DIE_AFTER = "GAR_TEST_DIE_AFTER"  # subprocess kill test: os._exit on this generate call (1-based)


_generate_calls = 0


# --------------------------------------------------------------------------- the test model


def bright_boxes(image_b64: str) -> list[list[int]]:
    """Pixel xyxy (inclusive) of the white rectangles, left to right."""
    img = cv2.imdecode(np.frombuffer(base64.b64decode(image_b64), np.uint8), cv2.IMREAD_GRAYSCALE)
    n, _, stats, _ = cv2.connectedComponentsWithStats((img > 128).astype(np.uint8))
    boxes = [[int(x), int(y), int(x + w - 1), int(y + h - 1)] for x, y, w, h, _ in stats[1:n]]
    return sorted(boxes)


class RectModel(BaseChatModel):
    """Points at the white rectangles; confident audio; votes av 0.6 keep=true; refine keeps the box."""

    @property
    def _llm_type(self) -> str:
        return "rect-test"

    @property
    def supports_multiple_samples(self) -> bool:
        return True

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        global _generate_calls
        meta = (run_manager.metadata if run_manager else None) or {}
        stage, multi = meta.get("gar_stage"), "multi" in str(meta.get("gar_template"))
        n = int(kwargs.get("n") or 1)
        if stage == "audio":
            answer = (
                {"audio_classes": ["a", "b"], "audio_confidence_scores": [0.9, 0.9]}
                if multi
                else {"audio_class": "a", "audio_confidence_score": 0.9}
            )
        elif stage == "generate":
            _generate_calls += 1
            if os.environ.get(DIE_AFTER) and _generate_calls >= int(os.environ[DIE_AFTER]):
                os._exit(137)  # a kill in the middle of a sample
            image = next(b for b in messages[-1].content if isinstance(b, dict) and b.get("type") == "image")
            boxes = bright_boxes(image["base64"])
            if not boxes:
                raise RuntimeError("nothing bright in the frame")
            answer = (
                {"bboxes": boxes[:2], "descriptions": ["x", "y"]} if multi else {"bbox": boxes[0], "description": "x"}
            )
        elif stage == "analyze":
            answer = {
                "av_consistency": 0.6,
                "keep": True,
                "role_tags": ["body"],
                "anchor_votes": [{"anchor": "body", "score": 0.9}],
            }
        else:
            answer = {"changed": False, "refined_description": "kept"}
        text = json.dumps(answer)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text)) for _ in range(n)])


# --------------------------------------------------------------------------- tiny benchmarks


def _frame(path: Path, width: int, height: int, boxes: list[list[int]]) -> None:
    img = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        img[y1 : y2 + 1, x1 : x2 + 1] = 255
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 100])


def _audio(path: Path) -> None:
    t = np.arange(8000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)


def norm(box: list[int], width: int = 224, height: int = 224) -> list[float]:
    """Inclusive pixel xyxy -> normalised xyxy (x2 / W lands on grid pixel x2 when W = 224)."""
    x1, y1, x2, y2 = box
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def xywh(box: list[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def make_benchmark(root: Path, dataset: str, entries: list[dict]) -> tuple[Path, Path, Path]:
    """Frames, audio and the GT file in the dataset's format. entry: id, drawn, gt (normalised xyxy
    list), size (w, h), frame: "ok" | "absent" | "corrupt"."""
    frames, audio = root / "frames", root / "audio"
    frames.mkdir(parents=True, exist_ok=True)
    audio.mkdir(exist_ok=True)
    records = []
    for e in entries:
        w, h = e.get("size", (224, 224))
        kind = e.get("frame", "ok")
        if kind == "ok":
            _frame(frames / f"{e['id']}.jpg", w, h, e["drawn"])
        elif kind == "corrupt":
            (frames / f"{e['id']}.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
        _audio(audio / f"{e['id']}.wav")
        gt = e["gt"]
        if dataset == "vggss-single":
            records.append({"file": e["id"], "class": "a", "bbox": gt})
        elif dataset == "music-solo":
            records.append({"file": e["id"], "class": "a", "bbox": xywh(gt[0])})
        else:
            conv = xywh if dataset == "music-duet" else (lambda b: b)
            records.append(
                {
                    "file": e["id"],
                    "class_src1": "a",
                    "bbox_src1": conv(gt[0]),
                    "class_src2": "b",
                    "bbox_src2": conv(gt[1]),
                }
            )
    gt_file = root / "gt.json"
    gt_file.write_text(json.dumps(records))
    return frames, audio, gt_file


# a: prediction = GT -> cIoU 1, AP 1. b: GT the left half, prediction shifted right by a quarter ->
# cIoU 12544 / (25088 + 12544) = 1/3, AP = prec * rec + (1 - rec) * |G| / N = .25 + .25 = .5.
# c: black frame -> the model raises (failed run). d: no frame (missing). e: corrupt jpg (failed, media).
# A run of it exits 1: e failed on its input, which is not the method's outcome (issue 18.3).
MINI_EXIT = 1


MINI = [
    {"id": "a", "drawn": [[56, 56, 167, 167]], "gt": [norm([56, 56, 167, 167]), norm([0, 0, 20, 20])]},
    {"id": "b", "drawn": [[56, 0, 167, 223]], "gt": [norm([0, 0, 111, 223])]},
    {"id": "c", "drawn": [], "gt": [norm([0, 0, 111, 111])]},
    {"id": "d", "drawn": [], "gt": [norm([0, 0, 111, 111])], "frame": "absent"},
    {"id": "e", "drawn": [], "gt": [norm([0, 0, 111, 111])], "frame": "corrupt"},
]


def data_args(dataset, frames, audio, gt, out) -> list:
    """The arguments of a run with the test model."""
    return ["--dataset", dataset, "--frames", frames, "--audio", audio, "--gt", gt, "--backend", BACKEND, "--out", out]


def gar_eval(capsys, *args):
    """`gar eval ARGS` in-process: (exit code, stdout, stderr)."""
    code = main(["eval", *(str(a) for a in args)])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


# left edges 0..112: av 0.2 .. 0.76 under test_eval_replay's VaryModel; its recorded gate (tau_av 0.5)
# refines x1 < 60 (av < 0.5)
X1 = [0, 16, 40, 64, 72, 96, 112]
ENTRIES = [
    {"id": f"s{i}", "drawn": [[x, 40, x + 100, 180]], "gt": [norm([x + 4, 44, x + 96, 176])]} for i, x in enumerate(X1)
] + [{"id": "zblack", "drawn": [], "gt": [norm([0, 0, 111, 111])]}]  # nothing to point at: the run fails
