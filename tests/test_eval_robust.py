"""One bad sample never stops a benchmark; workers die with `gar eval`; one run per evaluation folder.

Issue 18.3 and 18.6. The benchmarks are built by tests/benchmarks.py (white rectangles on black,
`RectModel` pointing at them); the models below add one hostile answer or a delay.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from benchmarks import RectModel, gar_eval, make_benchmark, norm
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from media_files import bomb_png

import gar_agent.eval.execute as execute
from gar_agent.eval.store import hold_folder

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
BIG = "1" + "0" * 400  # no float holds it
SLOW = "GAR_TEST_SLOW_S"  # seconds SlowRectModel waits per call (an environment variable: not a setting)


def _blocks(messages, kind: str) -> list[dict]:
    return [b for m in messages if isinstance(m.content, list) for b in m.content if isinstance(b, dict) and b.get("type") == kind]  # fmt: skip


class OverflowRectModel(RectModel):
    """RectModel, except for the sample whose audio is short: a 400-digit audio confidence and box."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        stage = (run_manager.metadata if run_manager else {}).get("gar_stage")
        audio = _blocks(messages, "audio")
        short = bool(audio) and len(base64.b64decode(audio[-1]["base64"])) < 12_000  # 0.25 s, the others 0.5 s
        if short and stage in ("audio", "generate"):
            text = (
                f'{{"audio_class": "a", "audio_confidence_score": {BIG}}}'
                if stage == "audio"
                else f'{{"bbox": [{BIG}, 1, 2, 3], "description": "x"}}'
            )
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])
        return super()._generate(messages, stop, run_manager, **kwargs)


class AsyncOverflowRectModel(OverflowRectModel):
    """The same with an async path: gar eval runs its samples as tasks on one event loop."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._generate(messages, stop, run_manager, **kwargs)


class SlowRectModel(RectModel):
    """RectModel taking GAR_TEST_SLOW_S seconds per call."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        time.sleep(float(os.environ.get(SLOW, "0")))
        return super()._generate(messages, stop, run_manager, **kwargs)


def forty(root: Path) -> list:
    """40 samples: 38 plain, `bomb` (a 20000x20000 PNG frame), `ovf` (overflowing answers)."""
    entries = []
    for i in range(38):
        x = 10 + 4 * i
        entries.append({"id": f"s{i:02d}", "drawn": [[x, 40, x + 60, 150]], "gt": [norm([x, 40, x + 60, 150])]})
    entries += [
        {"id": "bomb", "drawn": [[20, 20, 80, 80]], "gt": [norm([20, 20, 80, 80])]},
        {"id": "ovf", "drawn": [[20, 20, 80, 80]], "gt": [norm([20, 20, 80, 80])]},
    ]
    frames, audio, gt = make_benchmark(root, "vggss-single", entries)
    bomb_png(frames / "bomb.jpg", 20000, 20000)  # named as the dataset names frames; the header says PNG
    t = np.arange(4000) / 16000
    sf.write(audio / "ovf.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return ["--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt, "--n-votes", "1", "--no-vis"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return forty(tmp_path_factory.mktemp("forty"))


BOMB_WHY = "media: image file {frames}/bomb.jpg is 20000x20000 pixels (400 MP), over the limit of 50,000,000 pixels"
OVF_WHY = "generate: the box answer was unusable after 2 tries: 'bbox' is too large a number"


@pytest.mark.parametrize(
    "backend, extra",
    [
        ("test_eval_robust:OverflowRectModel", ["--workers", "4"]),  # threads
        ("test_eval_robust:AsyncOverflowRectModel", ["--workers", "4"]),  # the event loop
        ("test_eval_robust:OverflowRectModel", ["--workers", "4", "--processes", "2"]),
    ],
    ids=["threads", "loop", "processes"],
)
def test_a_bomb_and_an_overflow_fail_two_samples_of_forty_and_the_rest_run(data, capsys, tmp_path, backend, extra):
    out = tmp_path / "o"
    argv = ["run", *data, "--backend", backend, "--out", out, *extra]
    code, stdout, err = gar_eval(capsys, *argv)
    m = json.loads((out / "metrics.json").read_text())
    frames = data[data.index("--frames") + 1]
    assert code == 1, err
    assert (m["n_total"], m["n_evaluated"], m["n_failed"], m["n_input_errors"], m["n_internal_errors"]) == (
        40, 38, 2, 1, 0,
    )  # fmt: skip
    bomb, ovf = m["failed"]
    assert (bomb["id"], bomb["kind"], ovf) == ("bomb", "input", {"id": "ovf", "error": OVF_WHY, "kind": "run"})
    assert bomb["error"].startswith(BOMB_WHY.format(frames=frames))
    # each failed sample on a line of its own, with its reason; the exit line names the bad input
    assert f"  bomb: {BOMB_WHY.format(frames=frames)}" in stdout and f"  ovf: {OVF_WHY}" in stdout
    assert err.strip().splitlines()[-1].startswith("gar: error: 1 sample(s) failed on bad input (1) or an internal")
    assert "(bomb)" in err and "Traceback" not in err
    # the 400-digit audio confidence was an unusable audio answer ("unknown", 0), recorded in the trace
    assert "'audio_confidence_score' is too large a number" in (out / "traces" / "ovf" / "trace.json").read_text()
    # the same command again runs nothing: the failures are recorded (--retry-failed redoes them)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "samples").iterdir()}
    code, stdout, err = gar_eval(capsys, *argv)
    assert code == 1 and "40 of 40 samples already done" in stdout and "eval ━" not in stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "samples").iterdir()} == stamps
    assert json.loads((out / "metrics.json").read_text()) == m


def test_an_internal_error_fails_its_sample_with_its_traceback(data, capsys, tmp_path, monkeypatch):
    real = execute.save_overlay

    def broken(image, items, path):  # a bug of ours that shows on one sample only
        if Path(path).stem == "s07":
            raise ZeroDivisionError("the overlay of s07")
        return real(image, items, path)

    monkeypatch.setattr(execute, "save_overlay", broken)
    plain = [a for a in data if a != "--no-vis"]
    for extra in (["--workers", "1"], ["--workers", "4", "--processes", "2"]):
        out = tmp_path / f"o{len(extra)}"
        code, stdout, err = gar_eval(capsys, "run", *plain, "--backend", "test_eval_robust:OverflowRectModel",
                                     "--out", out, *extra)  # fmt: skip
        m = json.loads((out / "metrics.json").read_text())
        assert code == 1 and (m["n_evaluated"], m["n_failed"], m["n_internal_errors"]) == (37, 3, 1)
        doc = json.loads((out / "samples" / "s07.json").read_text())
        assert doc["score"]["error"] == "internal error: ZeroDivisionError: the overlay of s07"
        assert "Traceback (most recent call last)" in doc["traceback"] and "in broken" in doc["traceback"]
        assert "  s07: internal error: ZeroDivisionError: the overlay of s07" in stdout
        assert "or an internal error (1), listed above (bomb, s07)" in err and "Traceback" not in err


def test_fail_fast_stops_at_the_first(data, capsys, tmp_path, monkeypatch):
    real = execute.save_overlay

    def broken(image, items, path):
        if Path(path).stem == "s03":
            raise ZeroDivisionError("the overlay of s03")
        return real(image, items, path)

    monkeypatch.setattr(execute, "save_overlay", broken)
    plain = [a for a in data if a != "--no-vis"]
    out = tmp_path / "o"
    code, _, err = gar_eval(capsys, "run", *plain, "--backend", "test_eval_robust:OverflowRectModel",
                            "--out", out, "--fail-fast")  # fmt: skip
    assert code == 1 and "Traceback" in err and 'in broken\n    raise ZeroDivisionError("the overlay of s03")' in err
    assert err.strip().splitlines()[-1] == (
        "gar: error: stopped: --fail-fast: sample s03 failed: internal error: ZeroDivisionError: the overlay of s03 "
        "(4 finished samples are kept: fix it and run the same command, with --retry-failed to redo a sample "
        "recorded as failed)"
    )
    assert sorted(p.stem for p in (out / "samples").glob("*.json")) == ["s00", "s01", "s02", "s03"]
    # bad input stops it too, on every path
    for extra in (["--workers", "2"], ["--workers", "2", "--processes", "2"]):
        folder = tmp_path / f"p{len(extra)}"
        code, _, err = gar_eval(capsys, "run", *data, "--backend", "test_eval_robust:OverflowRectModel",
                                "--out", folder, "--fail-fast", *extra)  # fmt: skip
        done = {p.stem for p in (folder / "samples").glob("*.json")}
        assert code == 1 and "gar: error: stopped: --fail-fast: sample bomb failed: media: image file" in err
        assert "bomb" in done and "Traceback" not in err


def test_a_failure_that_cannot_be_recorded_stops_the_run(data, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(execute, "score_result", lambda *a, **k: 1 / 0)  # even the failed sample's file fails
    out = tmp_path / "o"
    code, _, err = gar_eval(capsys, "run", *data, "--backend", "test_eval_robust:OverflowRectModel", "--out", out)
    assert code == 1 and "ZeroDivisionError: division by zero" in err and "Traceback" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(
            "gar: error: stopped: sample s00: internal error: ZeroDivisionError: division by zero, and its failure "
            "could not be written (division by zero) (0 finished samples are kept"
        )
    )


# --------------------------------------------------------------------------- processes and the folder lock


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_eval_takes_its_workers_along_and_one_run_holds_a_folder(tmp_path, capsys):
    entries = [{"id": f"s{i:02d}", "drawn": [[20 + 5 * i, 40, 90 + 5 * i, 150]], "gt": [norm([20, 40, 90, 150])]}
               for i in range(12)]  # fmt: skip
    frames, audio, gt = make_benchmark(tmp_path, "vggss-single", entries)
    out = tmp_path / "o"
    argv = ["eval", "run", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt,
            "--n-votes", "1", "--no-vis", "--backend", "test_eval_robust:SlowRectModel", "--out", out]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]), SLOW: "0.4"}
    proc = subprocess.Popen([sys.executable, "-m", "gar_agent", *map(str, argv), "--processes", "2", "--workers", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "samples").glob("s*.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = _children(proc.pid)
        assert len(workers) == 2 and proc.poll() is None
        # a second run on the folder stops at once, naming the holder
        code, _, err = gar_eval(capsys, *argv[1:])
        assert code == 2 and err.strip() == (
            f"gar: error: {out} is in use by another gar eval (pid {proc.pid}): wait for it to end, or give another --out"
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers)  # none left asking the model while a resume asks again
        written = sorted(p.name for p in (out / "samples").glob("*.json"))
        time.sleep(1.0)
        assert sorted(p.name for p in (out / "samples").glob("*.json")) == written and len(written) < 12
    finally:
        if proc.poll() is None:
            proc.kill()
    # the lock went with the killed process: the same command resumes at once
    code, stdout, err = gar_eval(capsys, *argv[1:])
    assert code == 0, err
    assert f"{len(written)} of 12 samples already done" in stdout
    assert json.loads((out / "metrics.json").read_text())["n_evaluated"] == 12


def test_the_lock_names_the_holder_and_is_released(tmp_path):
    from gar_agent.eval.store import FolderInUse

    with hold_folder(tmp_path / "o"):
        assert (tmp_path / "o" / ".lock").read_text() == f"{os.getpid()}\n"
        child = subprocess.run(
            [sys.executable, "-c", "import sys; from gar_agent.eval.store import hold_folder\n"
             "with hold_folder(__import__('pathlib').Path(sys.argv[1])): pass", str(tmp_path / "o")],
            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        why = f"FolderInUse: {tmp_path / 'o'} is in use by another gar eval (pid {os.getpid()})"
        assert child.returncode == 1 and why in child.stderr
    with hold_folder(tmp_path / "o"):  # released when the block ends
        pass
    with pytest.raises(FolderInUse), hold_folder(tmp_path / "o"), hold_folder(tmp_path / "o"):
        pass  # a second open file in one process is refused as well


@pytest.mark.parametrize(
    "text, missing",
    [
        ('{"missing": ["x", "y"]}', ["x", "y"]),
        ('{"missing": "x"}', []),  # not a list: nothing can be taken from it
        ("[1]", []),
        ("{", []),
        ("[" * 100_000 + "]" * 100_000, []),  # deeper than json's recursion limit: was a RecursionError traceback
    ],
)
def test_the_missing_ids_of_a_folder_from_someone_else_never_raise(tmp_path, text, missing):
    from gar_agent.eval.store import EvalDir, recorded_missing

    (tmp_path / "metrics.json").write_text(text)
    assert recorded_missing(EvalDir(tmp_path)) == missing
