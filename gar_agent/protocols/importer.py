"""`gar prompts import`: the authors' prompts and system messages, read from their scripts with `ast`.

The released GAR-SSL code (github.com/VisualAIKHU/GAR-SSL, `code/` at bc85ec0) has no licence, so
the project ships none of its text: a user clones it and this module turns it into one prompt set
per benchmark, in our template format, such that rendering a template gives exactly the string the
authors' builder function returns for the same arguments.

Nothing is executed: every file is parsed with `ast`, and only structure that is recognised is
converted. Prompt builders are f-strings (or plain strings, optionally `.strip()`ped); their
expressions map to our placeholders (parameters by role, `W-1`, `analysis.get('key', ...)`, a local
`f"{float(conf):.3f}"` with a fallback). Scripts give, per benchmark, which builders are used with
which constant arguments (the dataset name), the system message of each `run_chat` call, the
argparse defaults (N, thresholds) and whether the aggregate is cleaned up afterwards (VGGSound-Duet).
Anything else is one error line naming the file, line and what was not recognised.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from gar_agent.errors import UserError
from gar_agent.hashing import file_sha256
from gar_agent.prompts import MANIFEST

PROMPT_MODULES = ("prompts_single.py", "prompts_duet.py")
UTILS = "model_utils.py"
# benchmark folder -> (script, sources)
BENCHMARKS = {
    "music-solo": ("GAR_music_solo.py", 1),
    "music-duet": ("GAR_music_duet.py", 2),
    "vggss-single": ("GAR_vggss_single.py", 1),
    "vggss-duet": ("GAR_vggss_duet.py", 2),
}
# Builder parameters by role: the authors' parameter name -> our placeholder.
PARAMETERS = {
    "prev_bbox": "box",
    "audio_class": "audio_class",
    "audio_conf_score": "audio_confidence",
    "W": "width",
    "H": "height",
    "max_delta_px": "max_delta",
}
ANALYSIS_KEYS = ("av_consistency", "role_tags", "anchor_votes", "keep")
# The builders we know, by stage, with the parameters they must have (in order).
BUILDERS = {
    "build_prompt_locate": ("generate", ()),
    "build_prompt_locate_duet": ("generate", ("dataset_name",)),
    "build_prompt_audio_only": ("audio", ()),
    "build_prompt_audio_duet": ("audio", ("dataset_name",)),
    "build_prompt_analysis_anchor_voting": ("analyze", ("prev_bbox", "audio_class", "audio_conf_score", "W", "H")),
    "build_prompt_analysis_anchor_voting_no_conf": ("analyze", ("prev_bbox", "audio_class", "W", "H")),
    "build_prompt_refine": ("refine", ("prev_bbox", "audio_class", "W", "H", "analysis", "max_delta_px")),
}


class PromptImportError(UserError):
    """Code that is not the released GAR-SSL structure this importer knows."""


def _fail(path: Path, node: ast.AST | None, what: str) -> PromptImportError:
    where = f"{path.name}:{node.lineno}" if node is not None and hasattr(node, "lineno") else path.name
    return PromptImportError(f"{where}: {what}: not the released GAR-SSL code this importer knows (bc85ec0)")


def _code(node: ast.AST) -> str:
    """A node as source text for a message; a node nested too deeply for `ast.unparse` is named, not shown."""
    try:
        return ast.unparse(node)
    except RecursionError:
        return f"<{type(node).__name__} nested too deeply to show>"


def _escape(text: str) -> str:
    return text.replace("$", "$$")


@dataclass
class Builder:
    """One prompt builder function converted to a template (pieces: literal text or placeholders)."""

    name: str
    params: tuple[str, ...]
    defaults: dict[str, object]
    pieces: list[tuple[str, str]]  # ("text", s) | ("field", placeholder) | ("param", param name)
    strip: bool = False

    def template(self, constants: dict[str, object]) -> str:
        """The template text, with constant arguments (the dataset name) written in."""
        pieces = []
        for kind, value in self.pieces:
            if kind == "param":
                if value not in constants and value not in self.defaults:
                    raise PromptImportError(f"{self.name}: no value for {value!r}")
                pieces.append(("text", _escape(format(constants.get(value, self.defaults.get(value)), ""))))
            else:
                pieces.append((kind, value))
        if self.strip:
            pieces = _strip_pieces(pieces, self.name)
        return "".join(v for _, v in pieces)


def _strip_pieces(pieces: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    # `.strip()` on the rendered string equals stripping the literal ends only when the ends are literal
    # text that is not all whitespace (else a value's own whitespace would be stripped too).
    out = [p for p in pieces if p[1]]
    for i, side in ((0, str.lstrip), (-1, str.rstrip)):
        if not out or out[i][0] != "text" or not side(out[i][1]):
            raise PromptImportError(f"{name}: .strip() of a string that does not start and end with text")
        out[i] = ("text", side(out[i][1]))
    return out


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _BuilderReader:
    """Reads one builder function's body (no execution)."""

    def __init__(self, path: Path, fn: ast.FunctionDef):
        self.path, self.fn = path, fn
        self.locals: dict[str, str] = {}  # local name -> placeholder (with its format spec)

    def read(self) -> Builder:
        fn, path = self.fn, self.path
        if fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs or fn.args.posonlyargs:
            raise _fail(path, fn, f"function {fn.name} has a signature with * or / arguments")
        params = tuple(a.arg for a in fn.args.args)
        expected = BUILDERS[fn.name][1]
        if params != expected:
            raise _fail(path, fn, f"function {fn.name}{params} does not have the parameters {expected}")
        defaults: dict[str, object] = {}
        for arg, default in zip(fn.args.args[len(fn.args.args) - len(fn.args.defaults) :], fn.args.defaults):
            if not isinstance(default, ast.Constant):
                raise _fail(path, default, f"function {fn.name}: default of {arg.arg} is not a constant")
            defaults[arg.arg] = default.value
        body = list(fn.body)
        if body and isinstance(body[0], ast.Expr) and _const_str(body[0].value) is not None:
            body = body[1:]  # docstring
        setup, last = body[:-1], (body[-1] if body else None)
        for stmt in setup:
            self._setup(stmt)
        if not isinstance(last, ast.Return) or last.value is None:
            raise _fail(path, last or fn, f"function {fn.name} does not end with `return <string>`")
        value, strip = last.value, False
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "strip"
            and not value.args
            and not value.keywords
        ):
            value, strip = value.func.value, True
        return Builder(fn.name, params, defaults, self._pieces(value), strip)

    def _setup(self, stmt: ast.stmt) -> None:
        path = self.path
        # analysis = analysis or {}
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "analysis"
            and isinstance(stmt.value, ast.BoolOp)
            and isinstance(stmt.value.op, ast.Or)
            and len(stmt.value.values) == 2
            and isinstance(first := stmt.value.values[0], ast.Name)
            and first.id == "analysis"
            and isinstance(second := stmt.value.values[1], ast.Dict)
            and not second.keys
        ):
            return
        # try: s = f"{float(param):spec}"  except ...: s = "<fallback>"
        if isinstance(stmt, ast.Try) and len(stmt.body) == 1 and len(stmt.handlers) == 1 and not stmt.finalbody:
            assign, handler = stmt.body[0], stmt.handlers[0]
            fallback = handler.body[0] if len(handler.body) == 1 else None
            if (
                isinstance(assign, ast.Assign)
                and len(assign.targets) == 1
                and isinstance(assign.targets[0], ast.Name)
                and isinstance(assign.value, ast.JoinedStr)
                and len(assign.value.values) == 1
                and isinstance(assign.value.values[0], ast.FormattedValue)
                and isinstance(fallback, ast.Assign)
                and isinstance(fallback.targets[0], ast.Name)
                and fallback.targets[0].id == assign.targets[0].id
                and _const_str(fallback.value) is not None
            ):
                fv = assign.value.values[0]
                call = fv.value
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "float"
                    and len(call.args) == 1
                    and isinstance(call.args[0], ast.Name)
                    and call.args[0].id in PARAMETERS
                    and fv.conversion == -1
                ):
                    # The fallback only runs when float() fails; our values are always floats.
                    self.locals[assign.targets[0].id] = PARAMETERS[call.args[0].id] + self._spec(fv)
                    return
        raise _fail(path, stmt, f"function {self.fn.name}: unrecognised statement {_code(stmt)[:60]!r}")

    def _spec(self, fv: ast.FormattedValue) -> str:
        out = "!" + chr(fv.conversion) if fv.conversion != -1 else ""
        if fv.format_spec is not None:
            parts = fv.format_spec.values if isinstance(fv.format_spec, ast.JoinedStr) else [fv.format_spec]
            texts = [t for p in parts if (t := _const_str(p)) is not None]
            if len(texts) != len(parts):
                raise _fail(self.path, fv, f"function {self.fn.name}: a computed format spec")
            out += ":" + "".join(texts)
        return out

    def _pieces(self, node: ast.AST) -> list[tuple[str, str]]:
        if (text := _const_str(node)) is not None:
            return [("text", _escape(text))]
        if not isinstance(node, ast.JoinedStr):
            raise _fail(self.path, node, f"function {self.fn.name} returns something other than a string")
        pieces = []
        for part in node.values:
            if (text := _const_str(part)) is not None:
                pieces.append(("text", _escape(text)))
            elif isinstance(part, ast.FormattedValue):
                pieces.append(self._field(part))
            else:
                raise _fail(self.path, part, f"function {self.fn.name}: unrecognised f-string part")
        return pieces

    def _field(self, fv: ast.FormattedValue) -> tuple[str, str]:
        expr, spec = fv.value, self._spec(fv)
        params = BUILDERS[self.fn.name][1]
        name = None
        if isinstance(expr, ast.Name) and expr.id in self.locals and not spec:
            return ("field", "${" + self.locals[expr.id] + "}")
        if isinstance(expr, ast.Name) and expr.id == "dataset_name" and expr.id in params and not spec:
            return ("param", "dataset_name")
        if isinstance(expr, ast.Name) and expr.id in params and expr.id in PARAMETERS:
            name = PARAMETERS[expr.id]
        elif (  # W-1, H-1
            isinstance(expr, ast.BinOp)
            and isinstance(expr.op, ast.Sub)
            and isinstance(expr.left, ast.Name)
            and expr.left.id in ("W", "H")
            and expr.left.id in params
            and isinstance(expr.right, ast.Constant)
            and expr.right.value == 1
        ):
            name = "max_x" if expr.left.id == "W" else "max_y"
        elif (  # analysis.get('key', default)
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "get"
            and isinstance(expr.func.value, ast.Name)
            and expr.func.value.id == "analysis"
            and "analysis" in params
            and expr.args
            and (key := _const_str(expr.args[0])) is not None
            and key in ANALYSIS_KEYS
            and len(expr.args) <= 2
            and not expr.keywords
        ):
            name = "analysis_" + key
        if name is None:
            raise _fail(self.path, fv, f"function {self.fn.name}: unrecognised expression {{{_code(expr)[:60]}}}")
        return ("field", "${" + name + spec + "}")


def read_builders(path: Path) -> dict[str, Builder]:
    """Every prompt builder of a prompts module, converted; anything else at top level is refused."""
    tree = _parse(path)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and _const_str(node.value) is not None:
            continue  # module docstring
        if isinstance(node, ast.FunctionDef) and node.name in BUILDERS and not node.decorator_list:
            out[node.name] = _BuilderReader(path, node).read()
            continue
        what = f"function {node.name}" if isinstance(node, ast.FunctionDef) else _code(node)[:60]
        raise _fail(path, node, f"unrecognised top-level {what!r}")
    return out


def _parse(path: Path) -> ast.Module:
    if not path.is_file():
        raise PromptImportError(f"{path} not found: CODE_DIR must be the `code/` folder of the GAR-SSL clone")
    try:
        text = path.read_text(encoding="utf-8")
        return ast.parse(text, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as e:
        raise PromptImportError(f"{path.name} cannot be parsed as Python ({e})") from None
    except (RecursionError, MemoryError):
        # Python's parser recurses once per operator of a chain like "a" + "a" + ...: name the statement
        line, tokens = _biggest_statement(text)
        raise PromptImportError(
            f"{path.name}:{line}: a statement of {tokens:,} tokens, too long or deeply nested for Python's parser: "
            "not the released GAR-SSL code this importer knows (bc85ec0)"
        ) from None


def _biggest_statement(text: str) -> tuple[int, int]:
    """(first line, token count) of the logical line with the most tokens (tokenize does not recurse)."""
    best, start, count = (1, 0), None, 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if start is not None and count > best[1]:
                    best = (start, count)
                start, count = None, 0
            elif tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                start = tok.start[0] if start is None else start
                count += 1
    except (tokenize.TokenError, SyntaxError):
        pass  # the parse already failed; the best line so far is still the likeliest
    return best


@dataclass
class ScriptFacts:
    """What a GAR_*.py script says about its benchmark."""

    module: str = ""
    builders: dict[str, tuple[str, dict]] = field(default_factory=dict)  # stage -> (builder, constants)
    systems: dict[str, str] = field(default_factory=dict)  # stage -> system template
    defaults: dict[str, object] = field(default_factory=dict)
    cleanup: str = "none"


def _system_template(path: Path, node: ast.AST) -> str:
    if (text := _const_str(node)) is not None:
        return _escape(text)
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if (text := _const_str(part)) is not None:
                out.append(_escape(text))
            elif (  # {k+1}: the source's number
                isinstance(part, ast.FormattedValue)
                and part.conversion == -1
                and part.format_spec is None
                and isinstance(part.value, ast.BinOp)
                and isinstance(part.value.op, ast.Add)
                and isinstance(part.value.left, ast.Name)
                and isinstance(part.value.right, ast.Constant)
                and part.value.right.value == 1
            ):
                out.append("${source_number}")
            else:
                raise _fail(path, part, "unrecognised expression in a system_text")
        return "".join(out)
    raise _fail(path, node, "system_text is neither a string nor an f-string")


def read_script(path: Path) -> ScriptFacts:
    """Builders, system messages, argparse defaults and aggregate clean-up of one GAR_*.py script."""
    tree = _parse(path)
    facts = ScriptFacts()
    calls: dict[str, tuple[str, dict]] = {}  # variable -> (builder, constant keyword arguments)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("prompts_single", "prompts_duet"):
            facts.module = node.module + ".py"
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            fn = node.value.func
            if isinstance(fn, ast.Name) and fn.id in BUILDERS and isinstance(node.targets[0], ast.Name):
                calls[node.targets[0].id] = (fn.id, _constant_keywords(path, node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            flag = _const_str(node.args[0]) if node.args else None
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if flag in ("--n_votes", "--tau_av", "--tau_audio") and isinstance(default, ast.Constant):
                facts.defaults[flag[2:]] = default.value
        elif (  # re.sub(...)[:32]: the VGGSound-Duet script re-cleans the aggregated role tags
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Slice)
            and isinstance(node.slice.upper, ast.Constant)
            and node.slice.upper.value == 32
            and isinstance(node.value, ast.Call)
            and _code(node.value.func) == "re.sub"
        ):
            facts.cleanup = "vggss-duet"
    if not facts.module:
        raise _fail(path, None, "no `from prompts_single/prompts_duet import ...`")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "run_chat":
            stage = _chat_stage(path, node, calls)
            system = next((k.value for k in node.keywords if k.arg == "system_text"), None)
            if system is None:
                raise _fail(path, node, "a run_chat call without system_text")
            if stage in facts.systems:
                raise _fail(path, node, f"two run_chat calls for stage {stage}")
            facts.systems[stage] = _system_template(path, system)
        elif node.func.id == "run_anchor_voting_multi":
            lam = next((a for a in node.args if isinstance(a, ast.Lambda)), None)
            body = lam.body if lam else None
            if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id in BUILDERS):
                raise _fail(path, node, "run_anchor_voting_multi without a `lambda: build_prompt_...(...)`")
            facts.builders["analyze"] = (body.func.id, {})
    for builder, constants in calls.values():
        stage = BUILDERS[builder][0]
        facts.builders.setdefault(stage, (builder, constants))
    missing = [s for s in ("generate", "audio", "analyze", "refine") if s not in facts.builders]
    missing += [f"system_text of {s}" for s in ("generate", "audio", "refine") if s not in facts.systems]
    if missing:
        raise _fail(path, None, f"found no {', '.join(missing)}")
    return facts


def _constant_keywords(path: Path, call: ast.Call) -> dict:
    out = {}
    for k in call.keywords:
        if k.arg == "dataset_name":
            if not isinstance(k.value, ast.Constant):
                raise _fail(path, k.value, "dataset_name is not a constant")
            out["dataset_name"] = k.value.value
    return out


def _chat_stage(path: Path, call: ast.Call, calls: dict[str, tuple[str, dict]]) -> str:
    contents = next((k.value for k in call.keywords if k.arg == "contents"), None)
    if not isinstance(contents, ast.List):
        raise _fail(path, call, "a run_chat call whose contents is not a list literal")
    for item in contents.elts:
        if not isinstance(item, ast.Dict):
            continue
        fields = {_const_str(k): v for k, v in zip(item.keys, item.values) if k is not None}
        if _const_str(fields.get("type")) == "text" and isinstance(text := fields.get("text"), ast.Name):
            var = text.id
            if var in calls:
                return BUILDERS[calls[var][0]][0]
    raise _fail(path, call, "a run_chat call whose text is not a prompt built by a known builder")


def read_utils(path: Path) -> dict:
    """From model_utils.py: the votes' system message and sampling, and the default max_new_tokens."""
    tree = _parse(path)
    out: dict = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        if fn.name == "run_chat":
            names = [a.arg for a in fn.args.args]
            defaults = dict(zip(names[len(names) - len(fn.args.defaults) :], fn.args.defaults))
            if isinstance(limit := defaults.get("max_new_tokens"), ast.Constant):
                out["max_new_tokens"] = limit.value
        if fn.name == "run_anchor_voting_multi":
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "run_chat":
                    kw = {k.arg: k.value for k in node.keywords}
                    system = _const_str(kw.get("system_text"))
                    if system is None:
                        raise _fail(path, node, "the votes' run_chat has no constant system_text")
                    out["system_analyze"] = _escape(system)
                    for name in ("temperature", "top_p", "max_new_tokens"):
                        if isinstance(value := kw.get(name), ast.Constant):
                            out["vote_" + name] = value.value
    for key in ("max_new_tokens", "system_analyze", "vote_temperature", "vote_top_p"):
        if key not in out:
            raise _fail(path, None, f"found no {key.replace('_', ' ')} (run_chat / run_anchor_voting_multi)")
    return out


def import_prompts(code_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write one prompt set per benchmark under out_dir; returns the folders written."""
    code_dir, out_dir = Path(code_dir), Path(out_dir)
    if not code_dir.is_dir():
        raise PromptImportError(f"{code_dir} is not a folder: give the `code/` folder of your GAR-SSL clone")
    modules = {name: read_builders(code_dir / name) for name in PROMPT_MODULES}
    utils = read_utils(code_dir / UTILS)
    sources = {name: file_sha256(code_dir / name) for name in (*PROMPT_MODULES, UTILS)}
    written = []
    for benchmark, (script, k) in BENCHMARKS.items():
        facts = read_script(code_dir / script)
        builders = modules[facts.module]
        templates = {}
        for stage, (builder, constants) in facts.builders.items():
            if builder not in builders:
                raise _fail(code_dir / script, None, f"uses {builder}, which {facts.module} does not define")
            templates[f"{stage}.txt"] = builders[builder].template(constants)
        systems = {**facts.systems, "analyze": utils["system_analyze"]}
        for stage, text in systems.items():
            templates[f"system_{stage}.txt"] = text
        manifest = {
            "protocol": "reference",
            "benchmark": benchmark,
            "sources": k,
            "analysis_builder": facts.builders["analyze"][0],
            "cleanup": facts.cleanup,
            "defaults": facts.defaults,
            "max_new_tokens": utils["max_new_tokens"],
            "vote_temperature": utils["vote_temperature"],
            "vote_top_p": utils["vote_top_p"],
            "imported_from": {**sources, script: file_sha256(code_dir / script)},
        }
        folder = out_dir / benchmark
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in templates.items():
            (folder / name).write_text(text, encoding="utf-8")
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        written.append(folder)
    return written
