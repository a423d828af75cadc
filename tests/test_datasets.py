"""Dataset loaders, the VGGSound-Duet builder and its CLI, on generated mini datasets and the real GT files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from gar_agent.cli.data_cmd import data_app
from gar_agent.data.duet import make_duet, read_pairs
from gar_agent.eval.datasets import (
    DATASETS,
    DatasetError,
    load_music_duet,
    load_music_solo,
    load_vggss,
    load_vggss_duet,
)

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "annotations"
GARBAGE = -2.8823037615171176e16  # the value VGG-SS uses in its degenerate boxes


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _media(
    tmp_path: Path, ids: list[str], frame_size=(64, 48), color=(0, 0, 255), audio=None, sr=16000
) -> tuple[Path, Path]:
    """frames/<id>.jpg and audio/<id>.wav for each id (a solid colour frame, a short clip)."""
    frames, audio_dir = tmp_path / "frames", tmp_path / "audio"
    frames.mkdir(exist_ok=True)
    audio_dir.mkdir(exist_ok=True)
    for sid in ids:
        w, h = frame_size
        cv2.imwrite(str(frames / f"{sid}.jpg"), np.full((h, w, 3), color, np.uint8))
        sf.write(str(audio_dir / f"{sid}.wav"), np.zeros(1600, np.float32) if audio is None else audio, sr)
    return frames, audio_dir


# --------------------------------------------------------------------------- loaders on mini files


def test_vggss_first_union_degenerate_and_missing(tmp_path):
    gt = _write_json(
        tmp_path / "vggss.json",
        [
            {"file": "a", "class": "dog barking", "bbox": [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9]]},
            {"file": "b", "class": "cat", "bbox": [[0.534375, 0.3375, GARBAGE, 1.2]]},
            {"file": "c", "class": "car", "bbox": [[0.0, 0.0, 1.0, 1.0]]},
        ],
    )
    frames, audio = _media(tmp_path, ["a", "b"])  # "c" has no files
    samples, missing = load_vggss(gt, frames, audio)
    assert [s.id for s in samples] == ["a", "b"] and missing == ["c"]
    a, b = samples
    assert a.gt_boxes == [[0.1, 0.2, 0.3, 0.4]] and a.classes == ["dog barking"] and a.sources == 1
    assert a.frame == frames / "a.jpg" and a.audio == audio / "a.wav"
    # clipped into [0, 1], then corners re-ordered (as GAR's clip_box does in pixels)
    assert b.gt_boxes == [[0.0, 0.3375, 0.534375, 1.0]]

    union, _ = load_vggss(gt, frames, audio, gt_boxes="union")
    assert union[0].gt_boxes == [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.9]]

    everything, missing = load_vggss(gt, frames, audio, require_files=False)
    assert len(everything) == 3 and missing == ["c"]
    assert [s.id for s in load_vggss(gt, frames, audio, ids=["b", "zz"])[0]] == ["b"]
    assert [s.id for s in load_vggss(gt, frames, audio, limit=1)[0]] == ["a"]
    with pytest.raises(DatasetError):
        load_vggss(gt, frames, audio, gt_boxes="all")


def test_music_solo_xywh_to_xyxy(tmp_path):
    gt = _write_json(
        tmp_path / "music_solo.json",
        [
            {"file": "v_000_00000", "class": "cello", "bbox": [0.25, 0.125, 0.5, 0.25]},
            {"file": "v_000_00007", "class": "violin", "bbox": [0.75, -0.1, 0.5, 0.5]},  # spills out: clipped
        ],
    )
    frames, audio = _media(tmp_path, ["v_000_00000", "v_000_00007"])
    samples, missing = load_music_solo(gt, frames, audio)
    assert missing == []
    assert samples[0].gt_boxes == [[0.25, 0.125, 0.75, 0.375]] and samples[0].classes == ["cello"]
    assert samples[1].gt_boxes == [[0.75, 0.0, 1.0, 0.4]]


def test_music_duet_two_sources_in_order(tmp_path):
    gt = _write_json(
        tmp_path / "music_duet.json",
        [
            {
                "file": "d_000_00000",
                "class_src1": "cello",
                "bbox_src1": [0.5, 0.25, 0.25, 0.5],
                "class_src2": "acoustic_guitar",
                "bbox_src2": [0.0, 0.0, 0.25, 0.25],
            }
        ],
    )
    frames, audio = _media(tmp_path, ["d_000_00000"])
    (s,), _ = load_music_duet(gt, frames, audio)
    assert s.sources == 2 and s.classes == ["cello", "acoustic_guitar"]
    assert s.gt_boxes == [[0.5, 0.25, 0.75, 0.75], [0.0, 0.0, 0.25, 0.25]]
    # a MUSIC-Duet (xywh) file is refused by the VGGSound-Duet (xyxy) loader
    with pytest.raises(DatasetError, match="bbox_src1"):
        load_vggss_duet(gt, frames, audio)


def test_clear_errors(tmp_path):
    frames, audio = tmp_path, tmp_path
    with pytest.raises(DatasetError, match="not found"):
        load_vggss(tmp_path / "nope.json", frames, audio)
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("a,cls,b,cls\r\n")
    with pytest.raises(DatasetError, match="not a JSON"):
        load_music_solo(csv_file, frames, audio)
    solo = _write_json(tmp_path / "solo.json", [{"file": "x", "class": "c", "bbox": [0.1, 0.1, 0.2, 0.2]}])
    with pytest.raises(DatasetError, match="MUSIC-Solo xywh"):
        load_vggss(solo, frames, audio)
    with pytest.raises(DatasetError, match=r"expected keys \['bbox_src1'.*found \['bbox', 'class', 'file'\]"):
        load_music_duet(solo, frames, audio)
    vgg = _write_json(tmp_path / "vgg.json", [{"file": "x", "class": "c", "bbox": [[0.1, 0.1, 0.2, 0.2]]}])
    with pytest.raises(DatasetError, match="MUSIC-Solo"):
        load_music_solo(vgg, frames, audio)
    with pytest.raises(DatasetError, match="list of objects"):
        load_vggss(_write_json(tmp_path / "obj.json", {"file": "x"}), frames, audio)
    for err in (DatasetError("x"),):
        assert isinstance(err, ValueError)


def test_registry():
    assert set(DATASETS) == {"vggss-single", "music-solo", "music-duet", "vggss-duet"}
    taus = {k: (d.tau_av, d.tau_audio, d.sources) for k, d in DATASETS.items()}
    assert taus == {
        "music-solo": (0.75, 0.75, 1),
        "music-duet": (0.75, 0.50, 2),
        "vggss-single": (0.50, 0.50, 1),
        "vggss-duet": (0.75, 0.75, 2),
    }
    assert DATASETS["vggss-duet"].loader is load_vggss_duet


# --------------------------------------------------------------------------- make_duet


@pytest.fixture()
def duet_inputs(tmp_path):
    """Two clips of different frame sizes/colours and audio lengths, a CRLF pairs CSV like the real one."""
    src = tmp_path / "src"
    src.mkdir()
    _media(src, ["A_000001"], frame_size=(320, 240), color=(0, 0, 255), audio=np.full(16000, 0.5, np.float32))
    # B: 0.5 s at 8 kHz, so make_duet must resample it to 16 kHz
    frames, audio = _media(
        src,
        ["B_000002"],
        frame_size=(100, 50),
        color=(255, 0, 0),
        audio=np.full(4000, -0.25, np.float32),
        sr=8000,
    )
    vggss = _write_json(
        tmp_path / "vggss.json",
        [
            {"file": "A_000001", "class": "dog barking", "bbox": [[0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1]]},
            {"file": "B_000002", "class": "playing cello", "bbox": [[0.2, 0.0, 1.0, 1.0]]},
            {"file": "C_000003", "class": "car", "bbox": [[0.2, 0.0, 1.0, 1.0]]},
        ],
    )
    pairs = tmp_path / "pairs.csv"  # no header, CRLF, no final newline (as the released CSV)
    pairs.write_bytes(b"A_000001,dog_barking,B_000002,playing_cello\r\nC_000003,car,A_000001,dog_barking")
    return vggss, pairs, frames, audio, tmp_path / "out"


def test_make_duet_canvas_gt_and_mix(duet_inputs):
    vggss, pairs, frames, audio, out = duet_inputs
    report = make_duet(vggss, pairs, frames, audio, out)
    assert report.written == 1
    assert report.skipped == [("C_000003__A_000001", "missing file: C_000003.jpg, C_000003.wav")]
    did = "A_000001__B_000002"
    img = cv2.imread(str(out / "frames" / f"{did}.jpg"))
    assert img.shape == (224, 448, 3)
    assert np.allclose(img[112, 100], [0, 0, 255], atol=8) and np.allclose(img[112, 340], [255, 0, 0], atol=8)

    mix, sr = sf.read(str(out / "audio" / f"{did}.wav"))
    assert sr == 16000 and len(mix) == 16000  # the longer clip's length
    # (a + b) / 2 while both play, a / 2 after B ends (B zero-padded); away from B's resampled edges
    assert np.allclose(mix[200:7800], (0.5 - 0.25) / 2, atol=2e-3)
    assert np.allclose(mix[8200:], 0.25, atol=2e-3)

    (entry,) = json.loads(report.gt_file.read_text())
    assert entry["file"] == did and entry["class_src1"] == "dog barking"
    assert entry["bbox_src1"] == pytest.approx([0.05, 0.2, 0.25, 0.6])  # first box only, left half
    assert entry["bbox_src2"] == pytest.approx([0.6, 0.0, 1.0, 1.0])  # right half

    (s,), missing = load_vggss_duet(report.gt_file, out / "frames", out / "audio")
    assert missing == [] and s.sources == 2 and s.classes == ["dog barking", "playing cello"]
    assert s.gt_boxes == [entry["bbox_src1"], entry["bbox_src2"]]


def test_make_duet_avoids_clipping_and_limit(tmp_path):
    loud = np.full(1600, 1.0, np.float32)
    frames, audio = _media(tmp_path, ["X", "Y", "Z"], audio=loud)
    vggss = _write_json(tmp_path / "v.json", [{"file": f, "class": "c", "bbox": [[0, 0, 1, 1]]} for f in "XYZ"])
    pairs = tmp_path / "p.csv"
    pairs.write_text("X,c,Y,c\nY,c,Z,c\n")
    report = make_duet(vggss, pairs, frames, audio, tmp_path / "out", limit=1)
    assert report.written == 1 and report.skipped == []
    mix, _ = sf.read(str(tmp_path / "out" / "audio" / "X__Y.wav"))
    assert np.max(np.abs(mix)) <= 1.0


def test_cli_make_duet(duet_inputs):
    vggss, pairs, frames, audio, out = duet_inputs
    runner = CliRunner()
    args = [
        "make-duet",
        "--vggss",
        str(vggss),
        "--pairs",
        str(pairs),
        "--frames",
        str(frames),
        "--audio",
        str(audio),
        "--out",
        str(out),
    ]
    ok = runner.invoke(data_app, args)
    assert ok.exit_code == 0, ok.output
    assert "written: 1" in ok.output and "missing file: 1" in ok.output

    bad = runner.invoke(data_app, [*args[:2], str(vggss.parent / "absent.json"), *args[3:]])
    assert bad.exit_code == 2
    assert "error:" in bad.stderr and "not found" in bad.stderr and "Traceback" not in bad.output
    assert len(bad.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the real annotation files


def _real(name: str) -> Path:
    path = ANNOTATIONS / name
    if not path.is_file():
        pytest.skip(f"real annotations not available ({path})")
    return path


def _in_unit_box(box: list[float]) -> bool:
    x1, y1, x2, y2 = box
    return all(0.0 <= v <= 1.0 for v in box) and x1 <= x2 and y1 <= y2


def test_real_vggss(tmp_path):
    gt = _real("vggss.json")
    first, _ = load_vggss(gt, tmp_path, tmp_path, require_files=False)
    union, missing = load_vggss(gt, tmp_path, tmp_path, gt_boxes="union", require_files=False)
    assert len(first) == len(union) == 5158 and len(missing) == 5158
    assert all(len(s.gt_boxes) == 1 for s in first)
    assert sum(len(s.gt_boxes) > 1 for s in union) == 539
    assert all(_in_unit_box(b) for s in union for b in s.gt_boxes)
    # no files here: nothing runnable, everything reported missing
    assert load_vggss(gt, tmp_path, tmp_path, limit=3) == ([], [s.id for s in first])


def test_real_music():
    solo, _ = load_music_solo(_real("music_solo.json"), Path("."), Path("."), require_files=False)
    duet, _ = load_music_duet(_real("music_duet.json"), Path("."), Path("."), require_files=False)
    assert len(solo) == 2124 and len(duet) == 1020
    assert all(len(s.gt_boxes) == 1 and _in_unit_box(s.gt_boxes[0]) for s in solo)
    assert all(len(s.gt_boxes) == 2 and all(_in_unit_box(b) for b in s.gt_boxes) for s in duet)


def test_real_duet_pairs_all_have_vggss_boxes():
    rows = read_pairs(_real("vggsound_duet_test.csv"))
    ids = {s.id for s in load_vggss(_real("vggss.json"), Path("."), Path("."), require_files=False)[0]}
    assert len(rows) == 5158 and all(len(r) == 4 for r in rows)
    assert all(r[0] in ids and r[2] in ids for r in rows)


# --------------------------------------------------------------------------- the documented --gt formats

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(DATASETS))
def test_each_documented_gt_example_is_read_by_its_loader_and_shown(name, tmp_path):
    """The example the README and `gar eval run --help` show is a file the benchmark's loader reads."""
    import subprocess
    import sys

    from gar_agent.eval.gt_formats import GT_FORMATS

    fmt = GT_FORMATS[name]
    gt = tmp_path / fmt.file
    gt.write_text(fmt.example)
    samples, missing = DATASETS[name].loader(gt, tmp_path, tmp_path, require_files=False)
    assert len(samples) == 2 and len(missing) == 2
    entry = json.loads(fmt.example)[0]
    first = samples[0]
    assert first.id == entry["file"] and len(first.gt_boxes) == DATASETS[name].sources
    raw = entry.get("bbox") or entry["bbox_src1"]
    raw = raw[0] if isinstance(raw[0], list) else raw
    if name.startswith("music"):  # x, y, w, h
        raw = [raw[0], raw[1], raw[0] + raw[2], raw[1] + raw[3]]
    assert first.gt_boxes[0] == pytest.approx(raw)
    # the same text, word for word, in the README and in the command's help
    assert fmt.example in (ROOT / "README.md").read_text()
    help_text = subprocess.run(
        [sys.executable, "-m", "gar_agent", "eval", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "100", "PATH": ""},
    ).stdout
    assert fmt.example in help_text.replace("\n  ", "\n") and f"{name} ({fmt.file})" in " ".join(help_text.split())
