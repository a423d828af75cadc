"""One registry for backends, protocols, graphs and datasets: lazy entries, aliases, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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
    for name, spec in DATASETS.items():  # the spec's own name is the one it is registered under
        assert spec.name == name
    assert DATASETS["vggss-duet"] is datasets.VGGSS_DUET
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
