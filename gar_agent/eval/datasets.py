"""Benchmark datasets: loaders for the released annotation formats and the VGGSound-Duet builder.

Ground-truth boxes always come out normalised xyxy in [0, 1], one entry per GT box (duets: one per
source, in source order). Frames are `<frames_dir>/<id>.jpg`, audio `<audio_dir>/<id>.wav`, the id
being the annotation's `file` stem (as in the released GAR-SSL scripts).

Formats (see /work/shared/benchmarks/README.md):
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

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from gar_agent.errors import UserError
from gar_agent.media import SAMPLE_RATE as DUET_SR
from gar_agent.media import decode_audio

DUET_SIDE = 224  # each clip's frame is resized to 224x224 on the 448x224 duet canvas
DUET_GT_NAME = "vggss_duet.json"


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
    """A benchmark: its loader, number of sources and the released code's gate thresholds."""

    name: str
    loader: Callable[..., tuple[list[Sample], list[str]]]
    sources: int
    tau_av: float
    tau_audio: float
    gt_format: str


# Thresholds: the argparse defaults of GAR-SSL's GAR_<dataset>.py scripts (tau_av / tau_audio).
DATASETS: dict[str, DatasetSpec] = {
    "vggss-single": DatasetSpec("vggss-single", load_vggss, 1, 0.50, 0.50, "vggss.json, normalised xyxy lists"),
    "music-solo": DatasetSpec("music-solo", load_music_solo, 1, 0.75, 0.75, "music_solo.json, normalised xywh"),
    "music-duet": DatasetSpec("music-duet", load_music_duet, 2, 0.75, 0.50, "music_duet.json, normalised xywh"),
    "vggss-duet": DatasetSpec(
        "vggss-duet",
        load_vggss_duet,
        2,
        0.75,
        0.75,
        "vggss_duet.json from `gar data make-duet`, normalised xyxy",
    ),
}


# --------------------------------------------------------------------------- VGGSound-Duet builder


@dataclass
class DuetReport:
    """What `make_duet` did: how many duets were written and why the others were skipped."""

    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (duet id or row, reason)
    gt_file: Path | None = None

    def skipped_by_reason(self) -> dict[str, int]:
        """Skip counts per reason (the reason text up to its first ':')."""
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            key = reason.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def read_pairs(duet_csv: Path) -> list[list[str]]:
    """Rows of the duet pairs CSV `fileA,classA,fileB,classB` (no header in the released file).

    The released file has CRLF line ends and no final newline; a header row, blank lines and
    surrounding spaces are tolerated. Rows with another number of fields are kept for reporting.
    """
    path = Path(duet_csv)
    if not path.is_file():
        raise DatasetError(f"duet pairs file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path} is not a CSV text file ({exc.__class__.__name__})") from None
    if rows and rows[0] and rows[0][0].lower() in {"filea", "file_a", "file"}:
        rows = rows[1:]
    if rows and not any(len(r) == 4 for r in rows):
        raise DatasetError(
            f"{path} is not a duet pairs CSV: expected 4 columns fileA,classA,fileB,classB, "
            f"found {len(rows[0])} fields in the first row"
        )
    return rows


def _first_boxes(vggss_json: Path) -> dict[str, tuple[list[float], str]]:
    """id -> (first VGG-SS box, cleaned; class) from vggss.json."""
    samples, _ = load_vggss(vggss_json, Path("."), Path("."), gt_boxes="first", require_files=False)
    return {s.id: (s.gt_boxes[0], s.classes[0]) for s in samples}


def mix_audio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a + b) / 2 over the longer length (the shorter zero-padded); scaled down if it would clip."""
    n = max(len(a), len(b))
    mix = (np.pad(a, (0, n - len(a))) + np.pad(b, (0, n - len(b)))) / 2.0
    peak = float(np.max(np.abs(mix))) if n else 0.0
    if peak > 1.0:  # decoded/resampled audio can overshoot [-1, 1] slightly
        mix = mix / peak
    return mix.astype(np.float32)


def duet_box(box: list[float], side: Literal["left", "right"]) -> list[float]:
    """A clip's normalised xyxy box -> normalised xyxy on the 448x224 canvas (left or right half)."""
    off = 0.0 if side == "left" else 0.5
    x1, y1, x2, y2 = box
    return [off + x1 / 2.0, y1, off + x2 / 2.0, y2]


def make_duet(
    vggss_json: Path,
    duet_csv: Path,
    frames_dir: Path,
    audio_dir: Path,
    out_dir: Path,
    limit: int | None = None,
) -> DuetReport:
    """Build VGGSound-Duet from single VGG-SS clips: frames side by side, audios mixed, GT placed.

    For each row `fileA,classA,fileB,classB` whose two frames and two audios exist: frame = A and B
    each resized to 224x224, A left (448x224 jpg); audio = both at 16 kHz mono, mixed by `mix_audio`;
    GT = A's first VGG-SS box in the left half, B's in the right half. Writes out_dir/frames/<id>.jpg,
    out_dir/audio/<id>.wav and out_dir/vggss_duet.json (format: module docstring); id = `<A>__<B>`.
    `limit` stops after that many written duets.
    """
    import cv2
    import soundfile as sf

    boxes = _first_boxes(Path(vggss_json))
    rows = read_pairs(Path(duet_csv))
    frames_dir, audio_dir, out_dir = Path(frames_dir), Path(audio_dir), Path(out_dir)
    for d, what in ((frames_dir, "frames"), (audio_dir, "audio")):
        if not d.is_dir():
            raise DatasetError(f"{what} folder not found: {d}")
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)

    report = DuetReport()
    entries: list[dict] = []
    for row in rows:
        if limit is not None and report.written >= limit:
            break
        if len(row) != 4:
            report.skipped.append((",".join(row), f"bad row: {len(row)} fields, expected 4"))
            continue
        file_a, _, file_b, _ = row
        did = f"{file_a}__{file_b}"
        no_box = [f for f in (file_a, file_b) if f not in boxes]
        if no_box:
            report.skipped.append((did, f"no VGG-SS box: {', '.join(no_box)}"))
            continue
        paths = [
            frames_dir / f"{file_a}.jpg",
            frames_dir / f"{file_b}.jpg",
            audio_dir / f"{file_a}.wav",
            audio_dir / f"{file_b}.wav",
        ]
        absent = [p.name for p in paths if not p.is_file()]
        if absent:
            report.skipped.append((did, f"missing file: {', '.join(absent)}"))
            continue
        imgs = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[:2]]
        if any(im is None for im in imgs):
            report.skipped.append(
                (did, "unreadable frame: " + ", ".join(p.name for p, im in zip(paths, imgs) if im is None))
            )
            continue
        try:
            wav_a, wav_b = decode_audio(paths[2]), decode_audio(paths[3])
        except (RuntimeError, ValueError, OSError) as exc:  # a decoder failure only skips this pair
            report.skipped.append((did, f"unreadable audio: {exc.__class__.__name__}"))
            continue
        canvas = np.hstack([cv2.resize(im, (DUET_SIDE, DUET_SIDE), interpolation=cv2.INTER_AREA) for im in imgs])
        cv2.imwrite(str(out_dir / "frames" / f"{did}.jpg"), canvas)
        sf.write(str(out_dir / "audio" / f"{did}.wav"), mix_audio(wav_a, wav_b), DUET_SR, subtype="PCM_16")
        (box_a, cls_a), (box_b, cls_b) = boxes[file_a], boxes[file_b]
        entries.append(
            {
                "file": did,
                "class_src1": cls_a,
                "bbox_src1": duet_box(box_a, "left"),
                "class_src2": cls_b,
                "bbox_src2": duet_box(box_b, "right"),
            }
        )
        report.written += 1

    report.gt_file = out_dir / DUET_GT_NAME
    report.gt_file.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return report
