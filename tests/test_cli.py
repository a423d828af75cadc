"""`gar run` / `gar demo` from the command line: the JSON document, the files, every bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import audio_answer, boxes_answer, vote, write_script

from gar_agent.cli.app import main


@pytest.fixture()
def script(tmp_path):
    return write_script(
        tmp_path / "script.json",
        audio=[audio_answer(["violin"], [0.5])],
        generate=[boxes_answer([[38, 70, 128, 215]])],
        analyze=[vote(0.9, True)],
        refine=[json.dumps({"bbox": [40, 72, 130, 217], "changed": True, "refined_description": "A violin."})],
    )


def run_json(capsys, args):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_json_document(example, script, tmp_path, capsys):
    image, audio, _ = example
    code, out, err = run_json(
        capsys,
        [
            "run",
            str(image),
            str(audio),
            "--backend",
            f"scripted:{script}",
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--n-votes",
            "3",
        ],
    )
    assert code == 0, err
    doc = json.loads(out)  # stdout is only the JSON
    assert doc["image"] == {"path": str(image), "width": 330, "height": 250}
    assert doc["audio"] == {"path": str(audio), "sample_rate": 16000, "duration_s": 3.0}
    assert doc["settings"] == {
        "sources": 1,
        "n_votes": 3,
        "votes_per_call": 3,
        "tau_av": 0.5,
        "tau_audio": 0.75,
        "graph": "gar",
        "backend": f"scripted:{script}",
        "protocol": "gar",
    }
    [src] = doc["sources"]
    assert src["initial_box"] == [38, 70, 128, 215] and src["box"] == [40, 72, 130, 217]
    assert src["refined"] is True and src["refined_description"] == "A violin." and src["status"] == "refined"
    assert src["analysis"] == {
        "av_consistency": 0.9,
        "keep": True,
        "role_tags": ["body"],
        "anchor_votes": [{"anchor": "body", "score": 0.9}],
        "n_votes": 3,
        "n_parsed": 3,
    }
    assert all(isinstance(v, int) for v in src["box"])
    assert doc["error"] is None and doc["usage"]["model_calls"] == 4
    assert json.loads((tmp_path / "o" / "result.json").read_text()) == doc
    assert (tmp_path / "o" / "overlay.png").stat().st_size > 0


def test_run_step_view(example, script, tmp_path, capsys):
    image, audio, _ = example
    code, out, _ = run_json(
        capsys, ["run", str(image), str(audio), "--backend", f"scripted:{script}", "--out", str(tmp_path)]
    )
    assert code == 0
    for piece in (
        "generate",
        "analyze · source 0",
        "gate · source 0",
        "audio_confidence",
        ">= 0.75",
        "-> refine",
        "refine · source 0",
        "applied: bbox",
        "result",
    ):
        assert piece in out, piece
    # the values, not only the labels: the script's answers as the view shows them
    lines = out.splitlines()

    def row(label: str) -> list[str]:
        return next(line.strip("│ ").split() for line in lines if line.strip("│ ").startswith(label))

    assert row("0 ")[:3] == ["0", "violin", "0.50"]  # Generate's source table: index, class, confidence
    assert row("av_consistency")[1:4] == ["0.900", ">=", "0.5"] and row("av_consistency")[4] == "yes"
    assert row("audio_confidence")[1:5] == ["0.500", ">=", "0.75", "no"]  # why it was refined
    assert "box [38, 70, 128, 215] -> [40, 72, 130, 217]" in out
    assert any("[38, 70, 128, 215]" in line and "[40, 72, 130, 217]" in line and "refined" in line for line in lines)


def test_model_error_is_in_the_result_and_exit_is_nonzero(example, tmp_path, capsys):
    image, audio, _ = example
    (tmp_path / "boom.py").write_text(
        "from langchain_core.language_models.fake_chat_models import FakeListChatModel\n"
        "class Boom(FakeListChatModel):\n"
        "    responses: list = ['x']\n"
        "    def _call(self, *a, **k):\n"
        "        raise RuntimeError('CUDA out of memory')\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        code, out, err = run_json(
            capsys, ["run", str(image), str(audio), "--backend", "boom:Boom", "--out", str(tmp_path / "o"), "--json"]
        )
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 1
    assert json.loads(out)["error"] == "generate: the model failed on the audio call: RuntimeError: CUDA out of memory"
    assert err.strip().splitlines() == [
        "gar: error: generate: the model failed on the audio call: RuntimeError: CUDA out of memory"
    ]


def _bad_inputs(tmp_path, example):
    image, audio, _ = example
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(tmp_path / "nosamples.wav", np.zeros(0, np.float32), 16000)
    (tmp_path / "adir").mkdir()
    i, a = str(image), str(audio)
    return [
        ([str(tmp_path / "missing.png"), a], "image file", "does not exist"),
        ([str(tmp_path / "adir"), a], "image path", "is a directory"),
        ([str(tmp_path / "empty.png"), a], "image file", "is empty"),
        ([str(tmp_path / "corrupt.jpg"), a], "image file", "could not be decoded"),
        ([i, str(tmp_path / "missing.wav")], "audio file", "does not exist"),
        ([i, str(tmp_path / "corrupt.wav")], "audio file", "could not be decoded"),
        ([i, str(tmp_path / "silent.wav")], "audio file", "is silent"),
        ([i, str(tmp_path / "nosamples.wav")], "audio file", "no samples"),
        ([i, a, "--sources", "0"], "--sources", "greater than or equal to 1"),
        ([i, a, "--n-votes", "abc"], "--n-votes", "valid integer"),
        ([i, a, "--tau-av", "1.5"], "--tau-av", "less than or equal to 1"),
        ([i, a, "--backend", "nonsense"], "--backend", "not 'qwen-omni'"),
        ([i, a, "--backend", "scripted:/no/such.json"], "script file", "not found"),
        ([i, a, "--backend", "json:JSONDecoder"], "--backend json:JSONDecoder", "not a LangChain BaseChatModel"),
        ([i, a, "--backend", "json:dumps"], "--backend json:dumps", "building the model failed"),
        ([i, a, "--graph", "nope"], "no graph named 'nope'", "gar"),
        ([i, a, "--graph", str(tmp_path / "empty.png")], "graph file", "not a Python file"),
        ([i, a, "--backend", "qwen-omni", "--model", str(tmp_path / "no-model")], "model path", "does not exist"),
        ([i, a, "--backend", "qwen-omni", "--model", str(tmp_path / "adir")], "no config.json", "--model"),
        ([i, a, "--prompts", str(tmp_path / "adir")], "prompt template", "not found"),
    ]


def test_each_bad_input_is_one_line_and_exit_2(example, tmp_path, capsys):
    script = write_script(
        tmp_path / "s.json",
        audio=[audio_answer(["x"], [0.9])],
        generate=[boxes_answer([[1, 1, 9, 9]])],
        analyze=[vote()],
    )
    for args, what, why in _bad_inputs(tmp_path, example):
        backend = [] if "--backend" in args else ["--backend", f"scripted:{script}"]
        code, out, err = run_json(capsys, ["run", *args, *backend, "--out", str(tmp_path / "o"), "--json"])
        lines = err.strip().splitlines()
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("gar: error: "), (args, err)
        assert what in lines[0] and why in lines[0], (args, lines[0])
        assert "Traceback" not in err and out == ""


def test_long_audio_is_windowed_with_a_notice(example, script, tmp_path, capsys):
    image, _, _ = example
    long = tmp_path / "long.flac"
    sf.write(long, (np.random.default_rng(0).standard_normal((16000 * 40, 2)) * 0.1).astype(np.float32), 16000)
    code, out, err = run_json(
        capsys, ["run", str(image), str(long), "--backend", f"scripted:{script}", "--json", "--out", str(tmp_path)]
    )
    assert code == 0
    assert json.loads(out)["audio"]["duration_s"] == 30.0
    assert "centred 30 s window 5.00-35.00 s" in err


def test_readme_demo_command(tmp_path):
    # The README's first command, as a user runs it (installed console script).
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gar_agent",
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--trace-dir",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SCRIPTED answers" in proc.stdout and "result" in proc.stdout
    doc = json.loads((tmp_path / "demo" / "result.json").read_text())
    assert [s["audio_class"] for s in doc["sources"]] == ["violin", "drum"]
    assert [s["refined"] for s in doc["sources"]] == [False, True]


def test_votes_per_call_above_n_is_refused(example, tmp_path, capsys):
    image, audio, script = example
    code = main(["run", str(image), str(audio), "--n-votes", "5", "--votes-per-call", "10",
                 "--backend", f"scripted:{script}", "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (
        "gar: error: --votes-per-call 10 is more than --n-votes 5: a call asks at most the N votes of a source; "
        "give at most 5"
    )


def test_undecodable_audio_names_the_file_not_a_buffer(example, tmp_path, capsys):
    image, _, script = example
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["run", str(image), str(bad), "--backend", f"scripted:{script}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "noise.wav" in err and "BytesIO" not in err and "0x" not in err


@pytest.mark.parametrize("where", ["--out", "--trace-dir", "--png"])
def test_an_output_path_that_cannot_be_a_folder_is_one_line(where, example, recorded, tmp_path, capsys):
    """A file where a folder goes (or a place that cannot be written) is the user's to fix: one line
    naming it, exit 2, not a FileExistsError traceback."""
    image, audio, script = example
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    if where == "--png":
        traces, run_id, _, _ = recorded
        argv = ["trace", "show", run_id, "--trace-dir", str(traces), "--png", str(taken)]
    else:
        folders = {"--out": str(tmp_path / "o"), "--trace-dir": str(tmp_path / "t"), where: str(taken)}
        argv = ["run", str(image), str(audio), "--backend", f"scripted:{script}"]
        argv += [piece for option, path in folders.items() for piece in (option, path)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"gar: error: {taken}: File exists")
