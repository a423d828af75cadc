"""Load and render prompt sets: one template file per stage (and system message), `${name}` placeholders.

Two kinds of set:
- the project's own (`prompts/`, protocol `gar`): `<stage>_single.txt` / `<stage>_multi.txt`;
- a set imported from the authors' released code (`gar prompts import`, protocol `reference`): one
  folder per benchmark with `manifest.json`, `<stage>.txt` and `system_<stage>.txt`.

Placeholders follow Python's f-string rules so an imported set renders exactly what the authors'
function returns: `${name}` is `format(value, "")` (Python's own text of a list, dict, float or
bool), `${name:.3f}` applies a format spec, `${name!r}` a conversion; `$$` is a literal `$`.
A prompt set is data, not code: a width or precision in a spec is at most `MAX_SPEC_NUMBER`
(`${width:>50000000}` would render 50 MB into every call).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gar_agent.errors import UserError
from gar_agent.hashing import file_sha256
from gar_agent.paths import PROMPTS_DIR
from gar_agent.registry import PROTOCOLS

STAGES = ("audio", "generate", "analyze", "refine")
EXTRA = ("repair",)
MANIFEST = "manifest.json"

# $$ | ${name[!conv][:spec]} | $name (string.Template's short form, kept for hand-written sets)
_PLACEHOLDER = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)(?:!(?P<conv>[rsa]))?(?::(?P<spec>[^{}]*))?\}"
    r"|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)|(?P<invalid>))"
)
_CONVERT: dict[str, Callable[[object], str]] = {"r": repr, "s": str, "a": ascii}
# Widths and precisions a prompt may ask for (the authors' use .3f); far more only inflates the prompt.
MAX_SPEC_NUMBER = 1000
_NUMBER = re.compile(r"\d+")


class PromptError(UserError):
    """A template that is missing or asks for a value the stage does not provide."""


def render_text(text: str, values: dict[str, Any], where: str = "template") -> str:
    """Fill `${name[!conv][:spec]}` placeholders as an f-string would; a missing value is an error."""

    def fill(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        if name is None:
            line = text.count("\n", 0, m.start()) + 1
            raise PromptError(f"prompt {where} line {line}: a '$' not followed by a name: write $$ for a literal $")
        if name not in values:
            raise PromptError(
                f"prompt {where} uses ${{{name}}}, which this stage does not provide; "
                f"available: {', '.join(sorted(values))}"
            )
        spec = m.group("spec") or ""
        for digits in _NUMBER.findall(spec):
            if len(digits) > len(str(MAX_SPEC_NUMBER)) or int(digits) > MAX_SPEC_NUMBER:
                line = text.count("\n", 0, m.start()) + 1
                shown = f"{spec[:24]}..." if len(spec) > 24 else spec
                raise PromptError(
                    f"prompt {where} line {line}: ${{{name}:{shown}}} asks for a width or precision of "
                    f"{digits[:12]}{'...' if len(digits) > 12 else ''}; at most {MAX_SPEC_NUMBER} is allowed: "
                    "fix the template"
                )
        value = values[name]
        if m.group("conv"):
            value = _CONVERT[m.group("conv")](value)
        try:
            return format(value, spec)
        except (TypeError, ValueError) as e:
            raise PromptError(f"prompt {where}: ${{{name}}} cannot be formatted ({e})") from None

    return _PLACEHOLDER.sub(fill, text)


def template_name(stage: str, sources: int) -> str:
    """File name of a stage's template in the project's own set: `<stage>_single.txt` / `<stage>_multi.txt`."""
    if stage in EXTRA:
        return f"{stage}.txt"
    return f"{stage}_{'single' if sources == 1 else 'multi'}.txt"


def benchmark_sets(directory: Path) -> list[str]:
    """The benchmark folders of an import root (each holds a manifest)."""
    return sorted(p.parent.name for p in directory.glob(f"*/{MANIFEST}"))


class PromptSet:
    """The templates of one prompt set, read once; `manifest` is set for an imported (reference) set."""

    def __init__(self, directory: str | Path | None = None, benchmark: str | None = None):
        directory = Path(directory) if directory else PROMPTS_DIR
        if not directory.is_dir():
            raise PromptError(f"prompts directory {directory} not found: pass an existing --prompts DIR")
        if not (directory / MANIFEST).is_file() and not any(directory.glob("*.txt")):
            sets = benchmark_sets(directory)
            if sets and benchmark in sets:
                directory = directory / benchmark
            elif sets:
                raise PromptError(
                    f"prompts directory {directory} holds the sets {', '.join(sets)}"
                    + (f" but none for {benchmark!r}" if benchmark else "")
                    + f": pass --prompts {directory}/<set>"
                )
        self.directory = directory
        self.manifest: dict | None = None
        if (directory / MANIFEST).is_file():
            try:
                text = (directory / MANIFEST).read_text(encoding="utf-8")
            except (OSError, ValueError) as e:
                raise PromptError(
                    f"{directory / MANIFEST} is not readable ({e}): run `gar prompts import` again"
                ) from None
            self.manifest = _manifest(text, directory / MANIFEST)
        self._cache: dict[str, str] = {}
        self._hashes: dict[str, str] | None = None
        self._recorded = False  # from_texts: the texts are all there is; no file is read

    @classmethod
    def from_texts(cls, texts: dict[str, str], directory: str | Path) -> PromptSet:
        """The prompt set a run recorded (its spec's template texts), read from no folder.

        `directory` is where the set was (for messages only). A replay asks the prompts exactly as
        recorded, even when the folder has been edited or is on another machine since.
        """
        self = cls.__new__(cls)
        self.directory = Path(directory)
        self.manifest = _manifest(texts[MANIFEST], self.directory / MANIFEST) if MANIFEST in texts else None
        self._cache = dict(texts)
        self._hashes = {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in sorted(texts.items())}
        self._recorded = True
        return self

    @property
    def protocol(self) -> str:
        """The protocol the set was written for: `reference` (imported) or `gar` (the project's own)."""
        return self.manifest["protocol"] if self.manifest else "gar"

    @property
    def cleanup(self) -> str:
        """The aggregate clean-up a reference set's script applies after voting ("vggss-duet" or "none")."""
        return (self.manifest or {}).get("cleanup", "none")

    def text(self, name: str) -> str:
        """The raw template text of a file in this set."""
        if name not in self._cache:
            if self._recorded:
                raise PromptError(
                    f"the recorded prompt set ({self.directory}) has no template {name}: pass --prompts DIR"
                )
            path = self.directory / name
            if not path.is_file():
                raise PromptError(f"prompt template {path} not found: add it or use another --prompts DIR")
            self._cache[name] = path.read_text(encoding="utf-8")
        return self._cache[name]

    def render(self, name: str, **values: Any) -> str:
        """Fill a template; a placeholder with no value is an error naming the file and field."""
        return render_text(self.text(name), values, str(self.directory / name))

    def hashes(self) -> dict[str, str]:
        """sha256 of every template file (and the manifest), for the trace.

        Computed once per set (the files are read once, as `text` reads them): every trace of an
        evaluation records them without re-reading and hashing ten files per sample.
        """
        if self._hashes is None:
            files = sorted([*self.directory.glob("*.txt"), *self.directory.glob(MANIFEST)])
            self._hashes = {p.name: file_sha256(p) for p in files}
        return dict(self._hashes)


def _manifest(text: str, where: Path) -> dict:
    """A prompt set's manifest.json, checked (PromptError naming the file)."""
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise PromptError(f"{where} is not readable JSON ({e}): run `gar prompts import` again") from None
    # only a registered name: a manifest picks among the protocols, it never names code to import
    if not isinstance(manifest, dict) or manifest.get("protocol") not in PROTOCOLS:
        raise PromptError(f"{where} names no known protocol: run `gar prompts import` again")
    if manifest["protocol"] != "gar":  # an imported set fixes the decoding (protocol_settings reads these)
        missing = [k for k in _DECODING if not _is_number(manifest.get(k))]
        if missing:
            raise PromptError(f"{where} has no number for {', '.join(missing)}: run `gar prompts import` again")
    return manifest


_DECODING = ("sources", "max_new_tokens", "vote_temperature", "vote_top_p")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def protocol_settings(prompts: PromptSet, protocol: str, sources: int) -> dict:
    """The Settings fields a protocol fixes for this prompt set; one line saying what to do if they clash.

    `gar` goes with the project's own sets and `reference` with an imported one; a researcher's protocol
    (any other registered name) reads the set it is given and fixes nothing else."""
    name = PROTOCOLS.canonical(protocol)
    if name is None:
        raise PromptError(str(PROTOCOLS.error(protocol)))
    protocol = name
    if protocol not in ("gar", "reference"):
        return {"protocol": protocol}
    if protocol == prompts.protocol == "gar":
        return {"protocol": "gar"}
    manifest = prompts.manifest  # set exactly when the set's protocol is not gar
    if protocol == prompts.protocol and manifest is not None:
        if manifest.get("sources") != sources:
            raise PromptError(
                f"prompt set {prompts.directory} is for {manifest.get('benchmark')} with "
                f"{manifest.get('sources')} source(s), not {sources}: pass --sources {manifest.get('sources')} "
                "or the set of another benchmark"
            )
        # The released code's decoding: 256 new tokens for every call, votes at temperature 0.4, top-p 0.9.
        return {
            "protocol": "reference",
            "max_new_tokens": manifest["max_new_tokens"],
            "vote_temperature": manifest["vote_temperature"],
            "vote_top_p": manifest["vote_top_p"],
        }
    if protocol == "reference":
        raise PromptError(
            "--protocol reference needs the authors' prompts, which the project does not ship: clone "
            "github.com/VisualAIKHU/GAR-SSL, run `gar prompts import GAR-SSL/code --out authors-prompts` "
            "and pass --prompts authors-prompts (README: Reproducing the paper)"
        )
    raise PromptError(
        f"prompt set {prompts.directory} was imported for --protocol {prompts.protocol}: pass "
        f"--protocol {prompts.protocol}, or drop --prompts to use the project's own set"
    )
