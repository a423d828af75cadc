"""`gar data make-duet`: build VGGSound-Duet from VGGSound-Single clips (two clips side by side, audio mixed).

Each duet puts the frames of two single-source clips side by side and mixes their audio; the GT is
the first VGG-SS box of each clip, squeezed into its half (normalised xyxy, source order kept).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from gar_agent.eval.datasets import DatasetError, load_vggss
from gar_agent.media import SAMPLE_RATE as DUET_SR
from gar_agent.media import decode_audio

DUET_SIDE = 224  # each clip's frame is resized to 224x224 on the 448x224 duet canvas
DUET_GT_NAME = "vggss_duet.json"


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
        read = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[:2]]
        imgs = [im for im in read if im is not None]
        if len(imgs) < len(read):
            report.skipped.append(
                (did, "unreadable frame: " + ", ".join(p.name for p, im in zip(paths, read) if im is None))
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
