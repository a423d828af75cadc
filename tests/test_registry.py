"""One registry for backends, protocols, graphs and datasets: lazy entries, aliases, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from gar_agent.registry import BACKENDS, DATASETS, GRAPHS, PROTOCOLS, Registry, RegistryError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of a researcher's, importable from tmp_path; it counts how often it was imported."""
    name = f"researcher_mod_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text("IMPORTS = [1]\nTHING = 'the thing'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_registering_imports_nothing_until_the_name_is_asked_for(user_module):
    reg = Registry("thing", "--thing")
    reg.add("it", f"{user_module}:THING", "alias")
    assert "it" in reg and "alias" in reg and reg.names() == ["it"]
    assert user_module not in sys.modules  # listing, membership and aliases import nothing
    assert reg.get("alias") == "the thing"
    assert user_module in sys.modules and reg.get("it") == "the thing"


def test_an_unknown_name_is_one_line_listing_the_registered_names():
    reg = Registry("thing", "--thing", forms=("'module:attr'",))
    reg.add("a", object())
    reg.add("b", "nowhere.at.all:x")  # never imported: the error only lists it
    with pytest.raises(RegistryError) as e:
        reg.get("c")
    assert str(e.value) == "--thing 'c': no thing of that name: use one of 'a', 'b' or 'module:attr'"
    assert reg.find("c") is None


def test_a_decorated_factory_is_registered_under_its_name_and_aliases():
    reg = Registry("backend", "--backend")

    @reg.register("mine", "my")
    def make(model, **options):
        return ("made", model)

    assert reg.get("my") is make and reg.names() == ["mine"]


def test_the_builtin_names_are_defined_once_and_load_nothing_to_be_listed():
    code = textwrap.dedent(
        """
        import sys
        from gar_agent.registry import BACKENDS, DATASETS, GRAPHS, PROTOCOLS
        names = [BACKENDS.names(), PROTOCOLS.names(), DATASETS.names(), GRAPHS.names()]
        for name in ("x", "qwen"):
            [r.find(name) is None for r in (PROTOCOLS, DATASETS)]
        print(names)
        print(sorted(m for m in sys.modules if m.startswith(("gar_agent.", "torch", "langchain"))))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    names, modules = out.strip().splitlines()
    assert "['qwen-omni', 'openai'], ['gar', 'reference'], ['vggss-single'" in names and "'no_gate'" in names
    loaded = eval(modules)  # a list of module names the child printed
    assert "gar_agent.registry" in loaded
    heavy = ("torch", "langchain", "gar_agent.models", "gar_agent.protocols", "gar_agent.eval", "gar_agent.topology")
    assert not [m for m in loaded if m.startswith(heavy)], loaded


def test_builtin_entries_load_what_the_old_lookups_gave():
    from gar_agent.eval import datasets
    from gar_agent.models.backends import openai, qwen_omni, scripted
    from gar_agent.paths import GRAPHS_DIR

    assert BACKENDS.get("qwen") is qwen_omni and BACKENDS.get("openai") is openai
    assert BACKENDS.prefix("scripted:/a/b.json") == (scripted, "/a/b.json") and BACKENDS.prefix("json:dumps") is None
    for name, spec in DATASETS.items():  # a spec's name is the one it is registered under (written once)
        assert spec.name == name
    assert DATASETS["vggss-duet"] == replace(datasets.VGGSS_DUET, name="vggss-duet")
    assert DATASETS["vggss-duet"] is DATASETS["vggss-duet"]  # prepared once
    assert GRAPHS.get("gar") == GRAPHS_DIR / "gar.py"
    assert PROTOCOLS.names() == ["gar", "reference"]


def test_a_graph_file_added_to_the_folder_is_found_and_a_registered_one_wins(tmp_path, monkeypatch):
    from gar_agent import paths
    from gar_agent.registry import register_graph

    folder = tmp_path / "graphs"
    folder.mkdir()
    (folder / "one.py").write_text("", encoding="utf-8")
    monkeypatch.setattr(paths, "GRAPHS_DIR", folder)
    monkeypatch.setattr(GRAPHS, "_entries", {})
    assert GRAPHS.names() == ["one"]
    (folder / "two.py").write_text("", encoding="utf-8")
    register_graph("one", tmp_path / "elsewhere.py")
    assert GRAPHS.names() == ["two", "one"] and GRAPHS.get("one") == tmp_path / "elsewhere.py"
    with pytest.raises(RegistryError, match=r"^no graph named 'three': use one of 'two', 'one' or a \.py path$"):
        GRAPHS.get("three")


def test_a_backend_registered_by_a_researchers_module_is_a_backend_name(monkeypatch):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from gar_agent.models.backends import resolve_backend
    from gar_agent.registry import register_backend

    monkeypatch.setattr(BACKENDS, "_entries", dict(BACKENDS._entries))
    monkeypatch.setattr(BACKENDS, "_aliases", dict(BACKENDS._aliases))

    @register_backend("my-model", "mm")
    def make(model, **options):
        return FakeListChatModel(responses=[model or "none"])

    assert resolve_backend("mm", "m1").responses == ["m1"]
    with pytest.raises(RegistryError, match="'qwen-omni', 'openai', 'my-model', 'scripted:FILE' or 'module:attr'"):
        BACKENDS.get("nope")


# --- a researcher's protocol ---------------------------------------------------------------------------


class Sceptic:
    """A researcher's protocol in their own module: gar's prompts and parsing, a stricter aggregate
    (a source is kept only when every vote keeps it) and its own wording of the vote request."""

    MODEL_FRAME = True

    def __init__(self):
        from gar_agent.protocols import gar

        self.gar = gar
        self.generate, self.parse_votes, self.refine = gar.generate, gar.parse_votes, gar.refine

    def analysis_request(self, state, ctx, n):
        request = self.gar.analysis_request(state, ctx, n)
        request.prompt = "Be sceptical. " + request.prompt
        return request

    def finish_analysis(self, votes, ctx):
        analysis = self.gar.finish_analysis(votes, ctx)
        unanimous = all(v.parsed is not None and v.parsed.keep for v in votes)
        return analysis.model_copy(update={"keep": unanimous})


def sceptic_script(**extra):
    from helpers import vote

    return {
        "audio": ['{"audio_class": "violin", "audio_confidence_score": 0.9}'],
        "generate": ['{"bbox": [10, 20, 110, 120], "description": "a violin"}'],
        "analyze": [vote(keep=True), vote(keep=False), vote(keep=True)],
        "refine": ['{"changed": false}'],
        **extra,
    }


@pytest.fixture
def sceptic(monkeypatch):
    """The registry as it was after the test: registering is global."""
    monkeypatch.setattr(PROTOCOLS, "_entries", dict(PROTOCOLS._entries))
    monkeypatch.setattr(PROTOCOLS, "_aliases", dict(PROTOCOLS._aliases))
    monkeypatch.setattr(PROTOCOLS, "_loaded", dict(PROTOCOLS._loaded))


def test_a_protocol_registered_by_a_researcher_runs_a_clip(media, sceptic):
    from gar_agent.models.scripted import ScriptedChatModel
    from gar_agent.registry import register_protocol
    from gar_agent.runner import run_clip
    from gar_agent.state import Settings

    register_protocol("sceptic", "tests.test_registry:Sceptic", "doubt")  # a class: built when first asked for
    outcome = run_clip(media, Settings(protocol="doubt", n_votes=3), ScriptedChatModel(script=sceptic_script()))
    state = outcome.state
    assert state.error is None
    analysis = state.sources[0].analysis
    assert analysis.n_votes == 3 and analysis.keep is False  # gar's majority would keep it (2 of 3)
    asks = [c.prompt for c in state.calls if c.stage == "analyze"]
    assert asks and all(p.startswith("Be sceptical. ") for p in asks)
    gar = run_clip(media, Settings(n_votes=3), ScriptedChatModel(script=sceptic_script())).state
    assert gar.sources[0].analysis.keep is True


def test_the_cli_takes_a_protocol_as_module_attr(example, tmp_path, capsys, sceptic):
    from helpers import write_script

    from gar_agent.cli.app import main

    image, audio, _ = example
    script = write_script(tmp_path / "s.json", **sceptic_script())
    args = ["run", str(image), str(audio), "--backend", f"scripted:{script}", "--n-votes", "3", "--json"]
    code = main([*args, "--protocol", "tests.test_registry:Sceptic", "--out", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = __import__("json").loads(out)
    assert result["settings"]["protocol"] == "tests.test_registry:Sceptic"
    assert result["sources"][0]["analysis"]["keep"] is False


@pytest.mark.parametrize(
    ("protocol", "why"),
    [
        ("bogus", "no protocol named 'bogus' is registered: use one of 'gar', 'reference' or 'module:attr'"),
        ("json:dumps", "--protocol json:dumps gives a function without generate, analysis_request"),
        ("no_such_module_here:X", "--protocol no_such_module_here:X: cannot import module 'no_such_module_here'"),
    ],
)
def test_a_bad_protocol_is_one_line_and_exit_2(example, tmp_path, capsys, protocol, why):
    from gar_agent.cli.app import main

    image, audio, script = example
    code = main(["run", str(image), str(audio), "--backend", f"scripted:{script}", "--protocol", protocol])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gar: error: "), err
    assert why in lines[0]


def _plant_protocol(folder: Path) -> Path:
    """A module `evil_protocol` in `folder` that writes `folder/marker` when imported; the marker's path."""
    marker = folder / "marker"
    (folder / "evil_protocol.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from gar_agent.protocols.gar import *  # noqa\nMODEL_FRAME = True\n",
        encoding="utf-8",
    )
    return marker


def _rename_protocol(value, name: str):
    """Every recorded `protocol` field of a trace document set to `name` (as a hostile trace would)."""
    if isinstance(value, dict):
        return {k: name if k == "protocol" else _rename_protocol(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_protocol(v, name) for v in value]
    return value


def test_a_protocol_a_trace_names_is_never_imported(recorded, capsys, tmp_path, monkeypatch):
    import json

    from helpers import cli

    from gar_agent.trace.store import resolve_trace

    traces, run_id, _, _ = recorded
    trace_file = resolve_trace(run_id, traces)
    marker = _plant_protocol(tmp_path)
    monkeypatch.chdir(tmp_path)  # the planted module is importable from here, as `module:attr` would be
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = _rename_protocol(json.loads(trace_file.read_text()), "evil_protocol:Anything")
    trace_file.write_text(json.dumps(doc))
    for command in (["replay", run_id], ["fork", run_id, "--box", "0=1,2,30,40"]):
        code, _, err = cli(capsys, *command, "--trace-dir", traces, "--out", tmp_path / "r")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("gar: error: "), err
        assert "'evil_protocol:Anything'" in lines[0] and "'gar', 'reference'" in lines[0], err
    assert not marker.exists() and "evil_protocol" not in sys.modules


def test_a_protocol_a_prompt_set_names_is_never_imported(tmp_path, monkeypatch):
    import json

    from gar_agent.prompts import PromptError, PromptSet

    marker = _plant_protocol(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "manifest.json").write_text(json.dumps({"protocol": "evil_protocol:Anything"}))
    with pytest.raises(PromptError, match="names no known protocol"):
        PromptSet(tmp_path / "set")
    assert not marker.exists() and "evil_protocol" not in sys.modules


def test_a_protocol_an_installed_package_declares_is_found_by_name(media, tmp_path, monkeypatch, sceptic):
    """An entry point `[project.entry-points."gar_agent.protocols"] sceptic = "pkg:Sceptic"` of an installed
    package: its name works wherever a protocol is named, read only when a name is not registered."""
    from gar_agent.models.scripted import ScriptedChatModel
    from gar_agent.runner import run_clip
    from gar_agent.state import Settings

    dist = tmp_path / "sceptic_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sceptic-plugin\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[gar_agent.protocols]\nsceptic-ep = tests.test_registry:Sceptic\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(PROTOCOLS, "_group", "gar_agent.protocols")
    assert PROTOCOLS.names() == ["gar", "reference"]  # listing for a help text does not scan the packages
    outcome = run_clip(media, Settings(protocol="sceptic-ep", n_votes=3), ScriptedChatModel(script=sceptic_script()))
    assert outcome.state.error is None and outcome.state.sources[0].analysis.keep is False
    assert "'sceptic-ep'" in str(PROTOCOLS.error("nope"))
