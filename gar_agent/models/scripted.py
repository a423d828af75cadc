"""A chat model that answers from a JSON file of canned answers per stage: demos and tests.

File format (`--backend scripted:FILE`)::

    {
      "audio":    ["<answer>", ...],
      "generate": ["<answer>", ...],
      "analyze":  {"0": ["<vote>", ...], "1": [...]}   # or one list for every source
      "refine":   ["<answer>", ...],
      "runs":     {"<run id>": {"generate": [...], ...}}   # optional: other answers for one run
    }

An answer is a string (sent as is, so messy answers can be scripted) or a JSON value (sent as its
JSON text). Each (stage, source) consumes its list in order (a Generate repair takes the next
"generate" answer); when the list runs out the last answer
repeats. A list per source is keyed by the source index as a string; one list serves every source.
Every run (one clip, one evaluation sample, one analysed time of `gar track`) starts its lists
from the top, so a resumed evaluation or track gets the same answers. `runs` gives one run its
own answers for the stages it names (the rest come from the top level): the run id is the sample
id in `gar eval` and `t<seconds>` in `gar track` (`t0002.000` for 2 s, as in its `times/`
folder), so motion can be scripted.
Usage figures are estimates (about 4 characters a token, a fixed cost per image or audio block),
marked `"estimated": true` in response metadata.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from gar_agent.errors import UserError

STAGES = ("audio", "generate", "analyze", "refine")
RUNS = "runs"  # per-run answers: {"<run id>": {"<stage>": ...}}
MEDIA_TOKENS = {"image": 256, "audio": 75}  # rough per-block costs for the estimate


class ScriptError(UserError):
    """A script file that cannot be used, or a stage it has no answer for."""


def _estimate_tokens(messages: list[BaseMessage]) -> int:
    total = 0
    for m in messages:
        blocks = m.content if isinstance(m.content, list) else [{"type": "text", "text": m.content}]
        for b in blocks:
            if isinstance(b, dict) and b.get("type") in MEDIA_TOKENS:
                total += MEDIA_TOKENS[b["type"]]
            else:
                total += max(1, len(b.get("text", "") if isinstance(b, dict) else str(b)) // 4)
    return total


class ScriptedChatModel(BaseChatModel):
    """Answers each (stage, source) from its scripted list; supports several samples per call."""

    script: dict[str, Any] = Field(description="Answers per stage (see the module docstring).")
    source_name: str = "script"
    _cursor: dict[tuple[str, str, str], int] = PrivateAttr(default_factory=dict)  # (run, stage, source)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedChatModel:
        """Load a script file, with one-line errors for a missing or malformed file."""
        path = Path(path)
        if not path.is_file():
            raise ScriptError(f"script file {path} not found: give --backend scripted:FILE with an existing JSON file")
        try:
            script = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ScriptError(f"script file {path} is not valid JSON ({e}): fix it") from None
        if not isinstance(script, dict) or not set(script) <= {*STAGES, RUNS}:
            raise ScriptError(f"script file {path} must be an object with keys among {', '.join((*STAGES, RUNS))}")
        runs = script.get(RUNS, {})
        if not isinstance(runs, dict) or not all(isinstance(r, dict) and set(r) <= set(STAGES) for r in runs.values()):
            raise ScriptError(
                f'script file {path}: "{RUNS}" must map run ids to objects with keys among {", ".join(STAGES)}'
            )
        return cls(script=script, source_name=str(path))

    @property
    def supports_multiple_samples(self) -> bool:
        return True

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict:
        return {"script": self.source_name}

    def _answers(self, stage: str, source: Any, run: Any = None) -> list:
        own = (self.script.get(RUNS) or {}).get(str(run)) if run is not None else None
        entry = own[stage] if isinstance(own, dict) and stage in own else self.script.get(stage)
        if isinstance(entry, dict):
            entry = entry.get(str(source), entry.get("*"))
        if not entry:
            raise ScriptError(f"script {self.source_name} has no '{stage}' answer for source {source}: add one")
        return entry if isinstance(entry, list) else [entry]

    def next_answer(self, stage: str, source: Any, run: Any = None, answered: int | None = None) -> str:
        """The next scripted answer for a stage and source in one run (the last repeats).

        Each run (LangGraph thread: one clip, one evaluation sample) consumes the lists from the
        start, so --ids, --limit or a resumed evaluation give every sample the same answers. A graph
        node says how many answers of the stage and source its run already holds (`answered`): the
        answer is the one after those, so a re-run from a checkpoint gets the original answers
        again. Without it (a direct call) a cursor per thread counts.
        """
        answers = self._answers(stage, source, run)
        key = (str(run), stage, str(source))
        with self._lock:
            i = self._cursor.get(key, 0) if answered is None else answered
            self._cursor[key] = i + 1
        answer = answers[min(i, len(answers) - 1)]
        return answer if isinstance(answer, str) else json.dumps(answer)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        # answering from a script never blocks: no worker thread under an event loop
        return self._generate(messages, stop, run_manager, **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        meta = (run_manager.metadata if run_manager else None) or {}
        stage, source, run = meta.get("gar_stage"), meta.get("gar_source"), meta.get("gar_thread")
        if stage not in STAGES:
            raise ScriptError("the scripted model only answers GAR stages (no 'gar_stage' in the call's metadata)")
        n = int(kwargs.get("n") or 1)
        prompt_tokens = _estimate_tokens(messages)
        gens = []
        answered = meta.get("gar_answered")
        for i in range(n):
            text = self.next_answer(stage, source, run, None if answered is None else int(answered) + i)
            out = max(1, len(text) // 4)
            gens.append(
                ChatGeneration(
                    message=AIMessage(
                        content=text,
                        usage_metadata={
                            "input_tokens": prompt_tokens if i == 0 else 0,
                            "output_tokens": out,
                            "total_tokens": (prompt_tokens if i == 0 else 0) + out,
                        },
                        response_metadata={"model_name": "scripted", "estimated": True},
                    )
                )
            )
        return ChatResult(generations=gens)
