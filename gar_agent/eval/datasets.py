"""Benchmark datasets: loaders for the released annotation formats (the duet builder is gar_agent.data.duet).

Each benchmark is a `DatasetSpec` registered by name in `gar_agent.registry.DATASETS` (`--dataset`).

Ground-truth boxes always come out normalised xyxy in [0, 1], one entry per GT box (duets: one per
source, in source order). Frames are `<frames_dir>/<id>.jpg`, audio `<audio_dir>/<id>.wav`, the id
being the annotation's `file` stem (as in the released GAR-SSL scripts).

Formats (see shared/benchmarks/README.md beside the project):
- VGG-SS `vggss.json`: `[{"file", "class", "bbox": [[x1, y1, x2, y2], ...]}]`, normalised xyxy.
- MUSIC-Solo `music_solo.json`: `[{"file", "class", "bbox": [x, y, w, h]}]`, normalised xywh.
- MUSIC-Duet `music_duet.json`: `[{"file", "class_src1", "bbox_src1": [x, y, w, h], "class_src2",
  "bbox_src2"}]`, normalised xywh.
- VGGSound-Duet `vggss_duet.json`, written by `make_duet` (GAR's own file is not public):
  `[{"file": "<fileA>__<fileB>", "class_src1", "bbox_src1": [x1, y1, x2, y2], "class_src2",
  "bbox_src2"}]`, normalised XYXY over the 448x224 canvas (src1 = left clip A, src2 = right clip B).
  NB: GAR's `load_vggss_duet_gt` reads its private file as xywh; this file is xyxy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from gar_agent.errors import UserError
from gar_agent.registry import DATASETS  # noqa: F401  (where the specs below are found by name)


class DatasetError(UserError):
    """A ground-truth or pairs file that cannot be used; the message is one line."""


class Sample(BaseModel):
    """One benchmark sample: where its frame and audio are, and its ground truth."""

    id: str
    frame: Path
    audio: Path
    gt_boxes: list[list[float]]  # normalised xyxy, one per GT box (duets: one per source, in order)
    classes: list[str]
    sources: int  # 1 or 2


# --------------------------------------------------------------------------- box helpers


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError
    return float(v)


def clean_xyxy(box: Iterable[Any]) -> list[float]:
    """Clip a normalised xyxy box into [0, 1] and re-order its corners (x1 <= x2, y1 <= y2).

    VGG-SS holds 18 degenerate boxes, some with values like -2.88e16. The released GAR code does
    `clip_box(denorm(..))`: clip into the image, then min/max the corners; we do the same in
    normalised space, so e.g. [0.53, 0.34, -2.9e16, 0.91] becomes [0, 0.34, 0.53, 0.91].
    A NaN coordinate becomes 0.
    """
    vals = [_number(v) for v in box]
    if len(vals) != 4:
        raise TypeError
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) if not math.isnan(v) else 0.0 for v in vals)
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def xywh_to_xyxy(box: Iterable[Any]) -> list[float]:
    """Normalised [x, y, w, h] -> clipped normalised xyxy."""
    vals = [_number(v) for v in box]
    if len(vals) != 4:
        raise TypeError
    x, y, w, h = vals
    return clean_xyxy([x, y, x + w, y + h])


# --------------------------------------------------------------------------- reading files


def _read_json_list(gt_file: Path, what: str) -> list[dict]:
    path = Path(gt_file)
    if not path.is_file():
        raise DatasetError(f"{what} ground-truth file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not a JSON file ({exc.__class__.__name__}); expected {what} JSON") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise DatasetError(f"{path}: expected a JSON list of objects ({what}), found {type(data).__name__}")
    return data


def _check_keys(data: list[dict], expected: set[str], path: Path, what: str) -> None:
    for entry in data:
        if not expected <= entry.keys():
            raise DatasetError(
                f"{path} is not a {what} file: expected keys {sorted(expected)}, found {sorted(entry.keys())}"
            )


def _bad_box(path: Path, what: str, entry: dict, key: str, shape: str) -> DatasetError:
    return DatasetError(
        f"{path} is not a {what} file: entry {entry.get('file')!r} has {key}={entry.get(key)!r}, expected {shape}"
    )


def _collect(
    items: Iterable[tuple[str, list[list[float]], list[str]]],
    frames_dir: Path,
    audio_dir: Path,
    sources: int,
    ids: Iterable[str] | None,
    limit: int | None,
    require_files: bool,
) -> tuple[list[Sample], list[str]]:
    """Build Samples in annotation order; `missing` lists ids whose frame or audio is absent.

    `ids` keeps only those ids; `limit` stops after that many samples (counting available ones when
    require_files, so `limit=20` gives 20 runnable samples). Duplicate ids keep their first entry.
    """
    wanted = set(ids) if ids is not None else None
    samples: list[Sample] = []
    missing: list[str] = []
    seen: set[str] = set()
    for sid, boxes, classes in items:
        if sid in seen or (wanted is not None and sid not in wanted):
            continue
        seen.add(sid)
        if limit is not None and len(samples) >= limit:
            break
        frame, audio = Path(frames_dir) / f"{sid}.jpg", Path(audio_dir) / f"{sid}.wav"
        absent = not frame.is_file() or not audio.is_file()
        if absent:
            missing.append(sid)
            if require_files:
                continue
        samples.append(Sample(id=sid, frame=frame, audio=audio, gt_boxes=boxes, classes=classes, sources=sources))
    return samples, missing


def _stem(entry: dict) -> str:
    return Path(str(entry["file"])).stem


# --------------------------------------------------------------------------- loaders


def load_vggss(
    gt_file: Path,
    frames_dir: Path,
    audio_dir: Path,
    gt_boxes: Literal["first", "union"] = "first",
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    require_files: bool = True,
) -> tuple[list[Sample], list[str]]:
    """VGG-SS (VGGSound-Single): normalised xyxy box lists.

    gt_boxes="first" keeps the first box like GAR's `load_vggss_gt`; "union" keeps every box (LVS
    protocol: all boxes drawn into one mask). Boxes are clipped into [0, 1] (`clean_xyxy`).
    """
    if gt_boxes not in ("first", "union"):
        raise DatasetError(f"gt_boxes must be 'first' or 'union', got {gt_boxes!r}")
    path, what = Path(gt_file), "VGG-SS"
    data = _read_json_list(path, what)
    _check_keys(data, {"file", "class", "bbox"}, path, what)

    def items():
        for e in data:
            raw = e["bbox"]
            if not isinstance(raw, list) or not raw or not all(isinstance(b, list) for b in raw):
                hint = " (a flat 4-list: MUSIC-Solo xywh?)" if isinstance(raw, list) and len(raw) == 4 else ""
                raise _bad_box(path, what, e, "bbox", "a non-empty list of [x1, y1, x2, y2]" + hint)
            try:
                boxes = [clean_xyxy(b) for b in raw]
            except TypeError:
                raise _bad_box(path, what, e, "bbox", "a list of [x1, y1, x2, y2] numbers") from None
            yield _stem(e), boxes[:1] if gt_boxes == "first" else boxes, [str(e["class"])]

    return _collect(items(), frames_dir, audio_dir, 1, ids, limit, require_files)


def load_music_solo(
    gt_file: Path,
    frames_dir: Path,
    audio_dir: Path,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    require_files: bool = True,
) -> tuple[list[Sample], list[str]]:
    """MUSIC-Solo: one normalised xywh box per frame, converted to xyxy."""
    path, what = Path(gt_file), "MUSIC-Solo"
    data = _read_json_list(path, what)
    _check_keys(data, {"file", "class", "bbox"}, path, what)

    def items():
        for e in data:
            try:
                box = xywh_to_xyxy(e["bbox"])
            except TypeError:
                raise _bad_box(path, what, e, "bbox", "one [x, y, w, h] list of 4 numbers") from None
            yield _stem(e), [box], [str(e["class"])]

    return _collect(items(), frames_dir, audio_dir, 1, ids, limit, require_files)


def _load_two_source(
    gt_file: Path,
    frames_dir: Path,
    audio_dir: Path,
    what: str,
    convert: Callable[[Any], list[float]],
    shape: str,
    ids: Iterable[str] | None,
    limit: int | None,
    require_files: bool,
) -> tuple[list[Sample], list[str]]:
    path = Path(gt_file)
    data = _read_json_list(path, what)
    _check_keys(data, {"file", "class_src1", "bbox_src1", "class_src2", "bbox_src2"}, path, what)

    def items():
        for e in data:
            boxes = []
            for key in ("bbox_src1", "bbox_src2"):
                try:
                    boxes.append(convert(e[key]))
                except (TypeError, ValueError):
                    raise _bad_box(path, what, e, key, shape) from None
            yield _stem(e), boxes, [str(e["class_src1"]), str(e["class_src2"])]

    return _collect(items(), frames_dir, audio_dir, 2, ids, limit, require_files)


def load_music_duet(
    gt_file: Path,
    frames_dir: Path,
    audio_dir: Path,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    require_files: bool = True,
) -> tuple[list[Sample], list[str]]:
    """MUSIC-Duet: `bbox_src1` / `bbox_src2` normalised xywh, converted to xyxy (source order kept)."""
    return _load_two_source(
        gt_file, frames_dir, audio_dir, "MUSIC-Duet", xywh_to_xyxy, "[x, y, w, h]", ids, limit, require_files
    )


def _strict_xyxy(box: Any) -> list[float]:
    vals = [_number(v) for v in box]
    # make_duet always writes x1 <= x2, y1 <= y2: reversed corners mean an xywh file (e.g. MUSIC-Duet).
    if len(vals) != 4 or vals[0] > vals[2] or vals[1] > vals[3]:
        raise ValueError
    return clean_xyxy(vals)


def load_vggss_duet(
    gt_file: Path,
    frames_dir: Path,
    audio_dir: Path,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    require_files: bool = True,
) -> tuple[list[Sample], list[str]]:
    """VGGSound-Duet as written by `make_duet`: `bbox_src1` / `bbox_src2` normalised xyxy on 448x224."""
    return _load_two_source(
        gt_file,
        frames_dir,
        audio_dir,
        "VGGSound-Duet",
        _strict_xyxy,
        "[x1, y1, x2, y2] with x1<=x2, y1<=y2 (an xywh file, e.g. MUSIC-Duet, does not fit)",
        ids,
        limit,
        require_files,
    )


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark: its loader, number of sources and the released code's gate thresholds; `name` is
    the one it is registered under in gar_agent.registry.DATASETS (set there, so it is written once)."""

    loader: Callable[..., tuple[list[Sample], list[str]]]
    sources: int
    tau_av: float
    tau_audio: float
    gt_format: str
    name: str = ""


def named(spec: DatasetSpec, name: str) -> DatasetSpec:
    """The registered benchmark `spec` with its registered name (the registry's `prepare`)."""
    if not isinstance(spec, DatasetSpec):
        raise DatasetError(f"--dataset {name} gives a {type(spec).__name__}, not a DatasetSpec")
    return replace(spec, name=name)


# Thresholds: the argparse defaults of GAR-SSL's GAR_<dataset>.py scripts (tau_av / tau_audio). Each is
# registered under its name in gar_agent.registry (DATASETS), where `--dataset` looks it up.
VGGSS_SINGLE = DatasetSpec(load_vggss, 1, 0.50, 0.50, "vggss.json, normalised xyxy lists")
MUSIC_SOLO = DatasetSpec(load_music_solo, 1, 0.75, 0.75, "music_solo.json, normalised xywh")
MUSIC_DUET = DatasetSpec(load_music_duet, 2, 0.75, 0.50, "music_duet.json, normalised xywh")
VGGSS_DUET = DatasetSpec(load_vggss_duet, 2, 0.75, 0.75, "vggss_duet.json from `gar data make-duet`, normalised xyxy")
