"""One registry for every name a user picks: backends, protocols, graphs and datasets (as lm-eval's).

A leaf module (it imports only `errors`). Each kind is a `Registry` whose entries are lazy: an entry
is a `"module:attr"` string (`"module"` alone names the module itself) that is imported only when the
name is asked for, or the object itself. So listing names for a help text or an error never loads
torch, langchain-openai or a protocol, and the built-in names below are the only place they are
defined. A name may have aliases (`qwen` for `qwen-omni`); an unknown name is one line listing the
registered ones.

A researcher adds their own without editing ours, in their own module:

    from gar_agent.registry import register_backend, register_protocol

    @register_backend("my-model")
    def my_model(model, **options): ...        # -> a LangChain BaseChatModel

    register_protocol("mine", "my_pkg.my_protocol")   # a module (or object) with the protocol's hooks

What a trace, an eval folder or a prompt set names is looked up here and only here: it can pick a
registered entry, never cause an import of its own (`Registry.trusted` is the one door through which a
`module:attr` the user typed becomes an entry).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gar_agent.errors import UserError


class RegistryError(UserError):
    """A name no entry is registered under, or an entry that cannot be loaded."""


def load(target: str) -> Any:
    """The object a `"module:attr"` (or `"module"`, or `"module:Class.attr"`) string names."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def load_user(target: str, flag: str, error: type[UserError] = RegistryError) -> Any:
    """A `module:attr` the user typed, imported from PYTHONPATH or the current directory; one-line errors."""
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise error(f"{flag} {target}: give module:attr (a module importable from here and a name in it)")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error inside the user's module is reported, not raised
        raise error(f"{flag} {target}: cannot import module {module_name!r} ({type(e).__name__}: {e})") from None
    if not hasattr(module, attr):
        raise error(f"{flag} {target}: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


class Registry:
    """Names of one kind -> lazy entries, with aliases and `prefix:REST` handlers (`scripted:FILE`).

    `unknown` is the one-line error for a name not registered: a format string given `flag`, `name`
    and `names` (the registered names and forms, quoted, e.g. `'gar', 'reference' or 'module:attr'`).
    `discover`, if given, is called at each look-up for entries found at run time (the shipped graph
    files, so a file added to GRAPHS_DIR is seen); a registered entry of the same name wins.
    `group` is an entry-point group (`[project.entry-points."gar_agent.protocols"]` in a package's
    pyproject: `name = "module:attr"`): installed packages' names, read the first time a name is not
    found among the registered ones (reading them costs a scan of the installed packages, which
    `gar --help` does not pay), and lazy like the rest.
    `prepare` checks (and may build) an entry when it is first loaded: a protocol given as a class is
    built, one without the interface's hooks is one line naming what it lacks; a benchmark is given
    the name it is registered under.
    """

    def __init__(
        self,
        kind: str,
        flag: str,
        unknown: str = "{flag} {name!r}: no {kind} of that name: use one of {names}",
        forms: tuple[str, ...] = (),
        discover: Callable[[], dict[str, Any]] | None = None,
        prepare: str | None = None,
        group: str | None = None,
    ) -> None:
        self.kind, self.flag, self.unknown, self.forms = kind, flag, unknown, forms
        self._prepare = prepare  # "module:attr" of `(entry, name) -> entry`, applied once as an entry loads
        self._entries: dict[str, Any] = {}  # primary name -> "module:attr" string or the object
        self._aliases: dict[str, str] = {}  # alias -> primary name
        self._loaded: dict[str, Any] = {}
        self._prefixes: dict[str, Any] = {}  # "scripted" -> entry of a handler taking what follows "scripted:"
        self._discover = discover
        self._found: dict[str, Any] = {}
        self._group = group  # the entry-point group installed packages declare theirs in, read on a miss

    # ----------------------------------------------------------------- registering

    def add(self, name: str, target: Any, *aliases: str) -> None:
        """Register `target` (a lazy "module:attr" string, or the object) under `name` and its aliases.

        Registering again under a name replaces the entry (a researcher's module reloaded in a notebook)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty name")
        self._aliases.pop(name, None)  # a name that was an alias becomes an entry of its own
        self._entries[name] = target
        self._loaded.pop(name, None)
        for alias in aliases:
            self._aliases[alias] = name

    def register(self, name: str, *aliases: str) -> Callable[[Any], Any]:
        """Decorator form of `add`: `@BACKENDS.register("my-model")` above a factory."""

        def add(obj: Any) -> Any:
            self.add(name, obj, *aliases)
            return obj

        return add

    def add_prefix(self, prefix: str, target: Any) -> None:
        """Register a handler for names of the form `prefix:REST` (called with REST)."""
        self._prefixes[prefix] = target

    def trusted(self, spec: str) -> str:
        """A name the user typed: a registered name as it is, or a `module:attr` imported now and registered
        under that spec (checked now: a bad one is not kept). Only the command line (or the caller's own
        code) may call this: never with a name read from a trace, an eval folder or a prompt set."""
        if spec in self or self.prefix(spec) is not None or ":" not in spec:
            return spec
        self.add(spec, load_user(spec, self.flag))
        try:
            self.find(spec)
        except Exception:
            del self._entries[spec]
            raise
        return spec

    # ----------------------------------------------------------------- looking up

    def _discovered(self) -> None:
        if self._discover is not None:
            self._found = {n: t for n, t in self._discover().items() if n not in self._entries}

    def _installed(self) -> bool:
        """Add the entry points of `group` (once); True if that was done now."""
        if self._group is None:
            return False
        from importlib.metadata import entry_points

        group, self._group = self._group, None
        for point in entry_points(group=group):
            self._entries.setdefault(point.name, point.value)  # a name registered here wins
        return True

    def canonical(self, name: str) -> str | None:
        """The primary name `name` is (or is an alias of), or None; imports nothing."""
        self._discovered()
        primary = self._aliases.get(name, name)
        if primary in self._entries or primary in self._found:
            return primary
        return self.canonical(name) if self._installed() else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.canonical(name) is not None

    def names(self) -> list[str]:
        """The registered names (aliases left out), in registration order; imports nothing."""
        self._discovered()
        return [*self._found, *self._entries]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def listing(self) -> str:
        """The names, quoted, and the forms, for an error: `'a', 'b' or 'module:attr'`."""
        names = [repr(n) for n in self.names()] + list(self.forms)
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

    def error(self, name: str) -> RegistryError:
        """The one-line error for a name not registered."""
        self._installed()
        return RegistryError(self.unknown.format(flag=self.flag, name=name, kind=self.kind, names=self.listing()))

    def find(self, name: str) -> Any | None:
        """The entry registered under `name` (loaded now if lazy), or None."""
        primary = self.canonical(name)
        if primary is None:
            return None
        if primary in self._found:  # found at run time (a file): not cached, the folder may change
            return self._found[primary]
        if primary not in self._loaded:
            target = self._entries[primary]
            entry = load(target) if isinstance(target, str) else target
            if self._prepare is not None:
                entry = load(self._prepare)(entry, primary)
            self._loaded[primary] = entry
        return self._loaded[primary]

    def get(self, name: str) -> Any:
        """The entry registered under `name`; RegistryError listing the names if there is none."""
        found = self.find(name)
        if found is None:
            raise self.error(name)
        return found

    __getitem__ = get

    def items(self) -> list[tuple[str, Any]]:
        """(name, entry) for every registered name, each loaded."""
        return [(name, self.get(name)) for name in self.names()]

    def prefix(self, spec: str) -> tuple[Any, str] | None:
        """(handler, REST) when `spec` is `prefix:REST` for a registered prefix, else None."""
        head, sep, rest = spec.partition(":")
        if not sep or head not in self._prefixes:
            return None
        target = self._prefixes[head]
        return (load(target) if isinstance(target, str) else target), rest


def _shipped_graphs() -> dict[str, Path]:
    from gar_agent.paths import GRAPHS_DIR  # a leaf too; read when graphs are first asked for

    return {p.stem: p for p in sorted(GRAPHS_DIR.glob("*.py")) if not p.stem.startswith("_")}


# --- the built-in names: each defined here once -------------------------------------------------------

BACKENDS = Registry(
    "backend",
    "--backend",
    "{flag} {name!r} is not {names}: use one of those forms",
    ("'scripted:FILE'", "'module:attr'"),
    group="gar_agent.backends",
)
BACKENDS.add("qwen-omni", "gar_agent.models.backends:qwen_omni", "qwen")
BACKENDS.add("openai", "gar_agent.models.backends:openai")
BACKENDS.add_prefix("scripted", "gar_agent.models.backends:scripted")

PROTOCOLS = Registry(
    "protocol",
    "--protocol",
    "no protocol named {name!r} is registered: use one of {names} (README: Your own protocol)",
    ("'module:attr'",),
    prepare="gar_agent.protocols.base:check",
    group="gar_agent.protocols",
)
PROTOCOLS.add("gar", "gar_agent.protocols.gar")
PROTOCOLS.add("reference", "gar_agent.protocols.reference")

# Graphs are files (loading one runs it): an entry is the file's path, found in GRAPHS_DIR.
GRAPHS = Registry("graph", "--graph", "no graph named {name!r}: use one of {names}", ("a .py path",), _shipped_graphs)

DATASETS = Registry(
    "dataset",
    "--dataset",
    "{flag} {name!r}: use one of {names}",
    prepare="gar_agent.eval.datasets:named",
    group="gar_agent.datasets",
)
DATASETS.add("vggss-single", "gar_agent.eval.datasets:VGGSS_SINGLE")
DATASETS.add("music-solo", "gar_agent.eval.datasets:MUSIC_SOLO")
DATASETS.add("music-duet", "gar_agent.eval.datasets:MUSIC_DUET")
DATASETS.add("vggss-duet", "gar_agent.eval.datasets:VGGSS_DUET")


# --- the decorator forms a researcher's module uses ---------------------------------------------------

Factory = Callable[..., Any]


def register_backend(name: str, *aliases: str) -> Callable[[Factory], Factory]:
    """Register a backend factory `(model, **options) -> BaseChatModel` under a `--backend` name."""
    return BACKENDS.register(name, *aliases)


def register_protocol(name: str, target: Any, *aliases: str) -> None:
    """Register a protocol (a module or object with the hooks of `gar_agent.protocols.base.GarProtocol`,
    or a lazy "module:attr" string) under a `--protocol` name."""
    PROTOCOLS.add(name, target, *aliases)


def register_graph(name: str, path: str | Path) -> None:
    """Register a graph file (it defines `build()`) under a `--graph` name."""
    GRAPHS.add(name, Path(path))


def register_dataset(name: str, target: Any, *aliases: str) -> None:
    """Register a benchmark (a `gar_agent.eval.datasets.DatasetSpec`, or a lazy "module:attr") under a name."""
    DATASETS.add(name, target, *aliases)


def backend_factory(name: str) -> Factory | None:
    """The factory registered under a backend name, or None."""
    return BACKENDS.find(name)


def backend_names() -> list[str]:
    """The backends' names (aliases left out), in registration order, for help texts and errors."""
    return BACKENDS.names()
