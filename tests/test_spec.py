"""The run spec: every run, evaluation and track records what decided it, without a secret, and a
saved run can rebuild its backend (`gar replay --backend recorded`) and show its graph source."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import VOTES, audio_answer, boxes_answer, cli, replay_cli, write_script
from pydantic import SecretStr
from trace_versions import as_v2

from gar_agent.cli.app import main
from gar_agent.errors import BackendError
from gar_agent.models.openai import ChatOpenAIServed
from gar_agent.paths import GRAPHS_DIR, PROMPTS_DIR
from gar_agent.prompts import PromptSet
from gar_agent.spec import BackendSpec, RunSpec, backend_spec, model_config_fields
from gar_agent.trace.spec_file import read_spec
from gar_agent.trace.store import read_trace, resolve_trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import StubServer, make_samples  # noqa: E402

SECRET = "sk-secret-7d1f0b9e42"
ROTATED = "sk-rotated-55aa01"
GAR_SOURCE = (GRAPHS_DIR / "gar.py").read_text(encoding="utf-8")


@pytest.fixture
def stub():
    server = StubServer()
    url = server.start()
    yield server, url
    server.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("clips"), 3)


def files_holding(root: Path, text: str) -> list[Path]:
    """Every file under root whose bytes contain text (as written, or JSON-escaped)."""
    needles = {text.encode(), json.dumps(text)[1:-1].encode()}
    return [p for p in root.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def served_run(tmp_path: Path, clips, url: str, *extra) -> tuple[int, Path]:
    frames, audio, _ = clips
    traces = tmp_path / "traces"
    args = ["run", frames / "s0000.jpg", audio / "s0000.wav", "--backend", "openai", "--model", "stub-model"]
    args += ["--base-url", url, "--max-retries", "2", "--retry-backoff", "0.001", "--request-timeout", "30"]
    args += ["--trace-dir", traces, "--out", tmp_path / "out", "--json", *extra]
    return main([str(a) for a in args]), traces


def test_a_run_records_a_spec_that_round_trips_and_replays_on_the_recorded_backend(
    stub, clips, tmp_path, monkeypatch, capsys, checkpointer
):
    server, url = stub
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    # tau_av 0.1: the stub's votes (av 0.3) pass the gate, so no Refine call is recorded
    code, traces = served_run(tmp_path, clips, url, "--tau-av", "0.1")
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert server.requests()[0].headers["authorization"] == f"Bearer {SECRET}"  # the key was in play
    assert not server.requests("refine")
    [run_dir] = [p for p in traces.iterdir() if (p / "trace.json").is_file()]
    trace = read_trace(run_dir)
    spec = trace.spec
    assert trace.schema_version == 3 and spec is not None and spec.command == "run"
    assert (spec.backend.name, spec.backend.model) == ("openai", "stub-model")
    assert spec.backend.options == {
        "base_urls": [url], "api_key_env": "OPENAI_API_KEY", "max_retries": 2,
        "request_timeout": 30.0, "backoff_base": 0.001,
    }  # fmt: skip
    assert spec.backend.resolved["max_tokens"] == 512 and spec.backend.resolved["image_frame"] == "auto"
    assert spec.graph.name == "gar" and spec.graph.source == GAR_SOURCE
    shipped = PromptSet()
    assert spec.prompts.templates["analyze_single.txt"] == shipped.text("analyze_single.txt")
    assert spec.prompts.hashes == shipped.hashes()
    assert (spec.settings.tau_av, spec.settings.n_votes, spec.protocol) == (0.1, 5, "gar")
    assert RunSpec.model_validate(json.loads(spec.model_dump_json())) == spec

    # a stricter gate needs the Refine call the recording lacks: the rebuilt backend asks it, with the
    # key read again from the variable the spec names (rotated since)
    monkeypatch.setenv("OPENAI_API_KEY", ROTATED)
    server.reset_record()
    code, out, err = cli(capsys, "replay", trace.run_id, "--checkpoints", checkpointer, "--backend", "recorded",
                         "--tau-av", "0.5", "--trace-dir", traces, "--out", tmp_path / "r", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["sources"][0]["refined"] is True
    [refine] = server.requests()
    assert refine.stage == "refine" and refine.body["model"] == "stub-model"
    assert refine.headers["authorization"] == f"Bearer {ROTATED}"
    replayed = [read_trace(p) for p in traces.glob("*/trace.json") if read_trace(p).parent == trace.run_id]
    assert [r.spec.backend for r in replayed] == [spec.backend] and replayed[0].spec.command == "replay"
    assert files_holding(tmp_path, SECRET) == [] and files_holding(tmp_path, ROTATED) == []


def test_an_eval_folder_stores_the_spec_once_and_no_secret(stub, clips, tmp_path, monkeypatch, capsys):
    _, url = stub
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    frames, audio, gt = clips
    out = tmp_path / "eval"
    args = ["eval", "run", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    args += ["--out", out, "--backend", "openai", "--model", "stub-model", "--base-url", url]
    args += ["--retry-backoff", "0.001", "--no-vis"]
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    full = read_spec(out / "spec.json")
    assert full.command == "eval" and full.options["dataset"] == "vggss-single"
    assert full.graph.source == GAR_SOURCE and full.prompts.templates
    traces = sorted((out / "traces").glob("*/trace.json"))
    assert len(traces) == 3
    for path in traces:
        slim = read_trace(path).spec
        assert slim.is_slim and slim.prompts.templates == {}
        assert slim == full.slim()
    # the graph source is stored once per folder, not once per sample
    line = next(x for x in GAR_SOURCE.splitlines() if len(x) > 30 and '"' not in x and "\\" not in x)
    assert files_holding(out, line) == [out / "spec.json"]
    assert files_holding(tmp_path, SECRET) == []
    # an eval folder's trace shows the source from the folder's spec.json
    code, shown, err = cli(capsys, "trace", "show", traces[0], "--graph-source")
    assert code == 0, err
    assert GAR_SOURCE in shown


def test_trace_show_prints_and_diffs_the_recorded_graph_without_running_it(recorded, capsys, tmp_path):
    traces, run_id, _, _ = recorded
    code, out, _ = cli(capsys, "trace", "show", run_id, "--graph-source", "--trace-dir", traces)
    assert code == 0 and GAR_SOURCE in out and "= shipped" in out
    marker = tmp_path / "marker"
    mine = tmp_path / "mine.py"
    mine.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n" + GAR_SOURCE)
    code, out, _ = cli(capsys, "trace", "show", run_id, "--graph-source", "--graph", mine, "--trace-dir", traces)
    assert code == 0 and not marker.exists()
    assert out.startswith("--- recorded:gar") and f"+Path({str(marker)!r}).write_text('ran')" in out


def test_a_version_2_trace_still_reads_and_replays(recorded, capsys, tmp_path, checkpointer):
    """A trace written before run specs (schema 2: no `spec`) reads, shows and replays as before."""
    traces, run_id, result, _ = recorded
    path = resolve_trace(run_id, traces)
    path.write_text(json.dumps(as_v2(read_trace(path))))  # as schema 2 stored it: no spec
    old = read_trace(path)
    assert old.spec is None and old.schema_version == 3  # read into today's shape
    code, out, err = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["sources"] == result["sources"]
    for args in (
        ("trace", "show", run_id, "--graph-source"),
        ("replay", run_id, "--checkpoints", checkpointer, "--backend", "recorded"),
    ):
        code, _, err = cli(capsys, *args, "--trace-dir", traces)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert "recorded no" in err
        assert "older than schema 3" in err  # the file is schema 2 (read into today's shape in memory)


def test_the_spec_leaves_credentials_out():
    spec = backend_spec(
        "openai",
        "m",
        {"base_urls": ["http://user:hunter2@gpu:8000/v1"], "api_key": "sk-given", "api_key_env": "MY_KEY"},
        chat=ChatOpenAIServed(model="m", base_urls=["http://user:hunter2@gpu:8000/v1"], api_key=SecretStr("sk-held")),
    )
    text = spec.model_dump_json()
    assert "hunter2" not in text and "sk-given" not in text and "sk-held" not in text
    assert spec.options["api_key_env"] == "MY_KEY" and spec.options["base_urls"] == ["http://user@gpu:8000/v1"]
    assert "api_key" not in model_config_fields(ChatOpenAIServed(model="m", base_urls=["http://h/v1"]))


def test_a_recorded_module_backend_is_never_imported(tmp_path, monkeypatch):
    (tmp_path / "planted_backend.py").write_text(f"open({str(tmp_path / 'marker')!r}, 'w').write('ran')\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BackendError, match="may not import"):
        BackendSpec(name="planted_backend:Model").build()
    assert not (tmp_path / "marker").exists() and "planted_backend" not in sys.modules


def test_a_replay_asks_the_recorded_templates_though_the_folder_changed_since(example, tmp_path, capsys, checkpointer):
    image, audio, _ = example
    prompts = tmp_path / "my-prompts"
    shutil.copytree(PROMPTS_DIR, prompts)
    script = write_script(
        tmp_path / "script.json",
        audio=[audio_answer(["violin"], [0.8])],
        generate=[boxes_answer([[38, 70, 128, 215]])],
        analyze=VOTES,
    )
    traces = tmp_path / "traces"
    code, out, err = cli(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--prompts", prompts,
                         "--tau-av", "0.4", "--trace-dir", traces, "--out", tmp_path / "o", "--json")  # fmt: skip
    assert code == 0, err
    recorded_result = json.loads(out)
    [run_dir] = [p for p in traces.iterdir() if (p / "trace.json").is_file()]
    (prompts / "analyze_single.txt").write_text("an edited prompt: ${audio_class}\n")
    code, out, err = replay_cli(
        capsys,
        run_dir,
        traces,
        checkpointer,
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert code == 0, err  # every call served: the prompts asked are the recorded ones
    assert json.loads(out)["sources"] == recorded_result["sources"]
    # the edited folder, named, is what a researcher asks for: its Analyze call is new
    code, _, err = cli(
        capsys,
        "replay",
        run_dir,
        "--checkpoints",
        checkpointer,
        "--prompts",
        prompts,
        "--trace-dir",
        traces,
        "--out",
        tmp_path / "r",
    )
    assert code == 3 and "analyze call for source 0" in err
