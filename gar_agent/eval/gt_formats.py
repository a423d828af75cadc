"""What each benchmark's `--gt` file looks like, as `gar_agent.eval.datasets` reads it.

One text per benchmark, shown by `gar eval run --help` and written out in the README; each
`example` is two real entries of the released annotation files (numbers shortened), and
tests/test_datasets.py loads them with the benchmark's own loader, so what is shown is what is read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GtFormat:
    """A benchmark's annotation file: its usual name, its shape in words, two entries of it."""

    title: str
    file: str
    shape: str
    example: str  # two lines: a JSON list of two entries


COMMON = (
    "A JSON list, one object per sample; `file` is the sample id (its frame is FRAMES/<id>.jpg, its "
    "audio AUDIO/<id>.wav; an extension in it is dropped). Coordinates are fractions of the frame's "
    "width and height, in [0, 1] (out-of-range values are clipped)."
)

GT_FORMATS: dict[str, GtFormat] = {
    "vggss-single": GtFormat(
        "VGGSound-Single",
        "vggss.json",
        "`class`, and `bbox`: a list of boxes [x1, y1, x2, y2] (corners); the first is the GT "
        "(`--gt-boxes union`: all of them).",
        '[{"file": "zpWuikVorYg_000032", "class": "elk bugling", "bbox": [[0.403, 0.253, 0.6, 0.75]]},\n'
        ' {"file": "RgyqhpOJFM4_000030", "class": "playing cello", "bbox": [[0.397, 0.022, 0.688, 0.994]]}]',
    ),
    "music-solo": GtFormat(
        "MUSIC-Solo",
        "music_solo.json",
        "`class`, and `bbox`: one box [x, y, w, h] (top-left corner, width, height).",
        '[{"file": "-_-TDDxoaAc_000_00000", "class": "cello", "bbox": [0.328, 0.122, 0.234, 0.85]},\n'
        ' {"file": "9XoXQXCVUQY_000_00000", "class": "saxophone", "bbox": [0.428, 0.139, 0.141, 0.767]}]',
    ),
    "music-duet": GtFormat(
        "MUSIC-Duet",
        "music_duet.json",
        "`class_src1`, `bbox_src1`, `class_src2`, `bbox_src2`: one box [x, y, w, h] per source, in source order.",
        '[{"file": "HnUOaSfTA6c_000_00000", "class_src1": "cello", "bbox_src1": [0.15, 0.308, 0.206, 0.583],'
        ' "class_src2": "acoustic_guitar", "bbox_src2": [0.488, 0.533, 0.362, 0.181]},\n'
        ' {"file": "HnUOaSfTA6c_000_00007", "class_src1": "cello", "bbox_src1": [0.151, 0.319, 0.202, 0.572],'
        ' "class_src2": "acoustic_guitar", "bbox_src2": [0.497, 0.536, 0.349, 0.181]}]',
    ),
    "vggss-duet": GtFormat(
        "VGGSound-Duet",
        "vggss_duet.json",
        "written by `gar data make-duet` (GAR's own file is not public) from the pairs CSV and vggss.json: `file` is <idA>__<idB>, the two "
        "clips side by side on a 448x224 canvas; `class_src1`, `bbox_src1` (left clip), `class_src2`, "
        "`bbox_src2` (right clip): one box [x1, y1, x2, y2] (corners, x1 <= x2, y1 <= y2) per source.",
        '[{"file": "RgyqhpOJFM4_000030__RoS465ZH1lg_000013", "class_src1": "playing cello",'
        ' "bbox_src1": [0.198, 0.022, 0.344, 0.994], "class_src2": "cat hissing", "bbox_src2": [0.573, 0.034, 0.983, 0.947]},\n'
        ' {"file": "3MUeg3nD2OU_000120__PeWX2XHqnTw_000043", "class_src1": "playing acoustic guitar",'
        ' "bbox_src1": [0.152, 0.0, 0.477, 1.0], "class_src2": "playing double bass", "bbox_src2": [0.773, 0.169, 0.977, 0.994]}]',
    ),
}


def help_text() -> str:
    """The formats as `gar eval run --help` prints them after the options (click keeps `\\b` blocks as written)."""
    parts = [f"--gt formats (--dataset NAME: file, shape). {COMMON}"]
    for name, f in GT_FORMATS.items():
        parts += [f"{name} ({f.title}): {f.file}, {f.shape}", f"\b\n{f.example}"]
    return "\n\n".join(parts)
