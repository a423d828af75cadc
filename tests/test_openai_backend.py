"""`--backend openai` against a real chat-completions server on 127.0.0.1 (tests/openai_stub.py).

What the server receives (content parts, `n`, sampling, system turns, headers, key), what comes
back (answers, usage with cached tokens), the faults (500, 429 with Retry-After, timeouts, slow
answers, malformed bodies, dropped connections) and what `gar eval` makes of them: retries within
a call, a failed sample when they run out, a re-run that redoes exactly the failed samples, a kill
and resume that neither loses nor repeats a finished sample, and at most W samples in flight.
Backoffs are milliseconds here (`backoff_base`, `--retry-backoff`).
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from gar_agent.calls import Request, ask
from gar_agent.cli.app import main
from gar_agent.media import load_media
from gar_agent.models.openai import (
    AllServersDown,
    ChatOpenAIServed,
    ServerPool,
    is_backend_fault,
    qwen_resize,
    retry_after_s,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_stub import Fault, StubServer, audio_key, dead_url, make_samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# per sample with the stub's default answers (av 0.3 < tau_av): audio, boxes, analyze (n=5), refine
CALLS_PER_SAMPLE = 4


@pytest.fixture
def servers():
    """Start StubServers on demand; all are stopped after the test."""
    started: list[StubServer] = []

    def start(**kwargs) -> tuple[StubServer, str]:
        server = StubServer(**kwargs)
        url = server.start()
        started.append(server)
        return server, url

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Twelve generated single-source clips: (frames, audio, gt)."""
    return make_samples(tmp_path_factory.mktemp("clips"), 12)


@pytest.fixture(scope="module")
def clip(bench):
    """The first clip decoded."""
    frames, audio, _ = bench
    return load_media(frames / "s0000.jpg", audio / "s0000.wav")


def served(url: str | list[str], **kwargs) -> ChatOpenAIServed:
    """The served model with millisecond backoffs."""
    urls = url if isinstance(url, list) else [url]
    return ChatOpenAIServed(model="stub-model", base_urls=urls, **{"backoff_base": 0.001, **kwargs})


def data_args(dataset: str, data, out: Path) -> list:
    """gar eval's data options: dataset, frames, audio, GT and the output folder."""
    frames, audio, gt = data
    return ["eval", "--dataset", dataset, "--frames", frames, "--audio", audio, "--gt", gt, "--out", out]


def eval_args(bench, out: Path, url: str | list[str], *extra) -> list[str]:
    """A gar eval command line against the given server(s)."""
    urls = [url] if isinstance(url, str) else url
    args = data_args("vggss-single", bench, out)
    args += ["--backend", "openai", "--model", "stub-model", "--retry-backoff", "0.001", "--no-vis"]
    for u in urls:
        args += ["--base-url", u]
    return [str(a) for a in [*args, *extra]]


def eval_process(args: list[str], out: Path, finished: int) -> subprocess.Popen:
    """`gar eval` in a process of its own, returned once `finished` sample files are written (or after 60 s)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gar_agent", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while len(list((out / "samples").glob("s*.json"))) < finished and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def sample_keys(bench) -> dict[str, str]:
    """Clip key (what the stub records) -> sample id."""
    frames, audio, _ = bench
    return {audio_key(load_media(f, audio / f"{f.stem}.wav").audio_bytes): f.stem for f in sorted(frames.glob("*.jpg"))}


# --------------------------------------------------------------------------- what is sent and received


def test_request_carries_media_parts_samples_and_sampling(servers, clip):
    stub, url = servers(cached_tokens=600)
    call = ask(
        served(url), clip, Request("analyze", 0, "analyze.txt", "Judge the box.", temperature=0.4, top_p=0.9, n=5)
    )
    assert call.error is None and len(call.answers) == 5 and json.loads(call.answers[0])["av_consistency"] == 0.3
    (seen,) = stub.requests()  # the five votes are one request with n
    body = seen.body
    assert (body["model"], body["n"], body["temperature"], body["top_p"]) == ("stub-model", 5, 0.4, 0.9)
    assert body["max_completion_tokens"] == 512 and body["stream"] is False
    (message,) = body["messages"]
    assert message["role"] == "user"
    image, audio, text = message["content"]
    assert image == {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(clip.image_bytes).decode()},
    }
    assert audio == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(clip.audio_bytes).decode(), "format": "wav"},
    }
    assert text == {"type": "text", "text": "Judge the box."}
    assert (seen.stage, seen.source) == ("analyze", "0")
    assert seen.headers["authorization"] == "Bearer EMPTY"
    # usage is the request's, counted once for the five samples; cached prompt tokens come through
    assert (call.usage.model_calls, call.usage.input_tokens, call.usage.output_tokens) == (1, 1000, 50)
    assert call.usage.cached_input_tokens == 600


def test_greedy_audio_only_call_sends_no_n_and_temperature_zero(servers, clip):
    stub, url = servers()
    call = ask(served(url), clip, Request("audio", None, "audio.txt", "Name the sound.", media=("audio",)))
    assert call.error is None and len(call.answers) == 1
    body = stub.requests()[0].body
    assert body["temperature"] == 0.0 and "n" not in body and "top_p" not in body
    assert [p["type"] for p in body["messages"][0]["content"]] == ["input_audio", "text"]


def test_system_turn_history_and_api_key(servers, clip, monkeypatch):
    stub, url = servers()
    monkeypatch.setenv("MY_KEY", "sk-test")
    from gar_agent.models.openai import from_options

    model = from_options("stub-model", [url], api_key_env="MY_KEY")
    question = HumanMessage(content=[clip.image_block(), {"type": "text", "text": "Box it."}])
    reply = model.invoke(
        [SystemMessage("You localize sounds."), question, AIMessage("not json"), HumanMessage("JSON only.")]
    )
    assert isinstance(reply, AIMessage)
    seen = stub.requests()[0]
    assert [m["role"] for m in seen.body["messages"]] == ["system", "user", "assistant", "user"]
    assert seen.body["messages"][0]["content"] == "You localize sounds."
    assert seen.body["messages"][2]["content"] == "not json"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert "x-gar-stage" not in seen.headers  # a plain invoke is not a GAR stage


def test_qwen_frame_matches_the_processor_resize():
    # Qwen's processor turns 320x240 into 308x252 (docs/ENVIRONMENT.md); tiny and huge images keep the area bounds
    assert qwen_resize(320, 240) == (308, 252)
    w, h = qwen_resize(20, 10)
    assert w % 28 == 0 and h % 28 == 0 and w * h >= 3136
    w, h = qwen_resize(8000, 6000)
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 12845056
    assert ChatOpenAIServed(model="Qwen/Qwen2.5-Omni-7B", base_urls=["http://x/v1"]).model_frame(320, 240) == (308, 252)
    assert ChatOpenAIServed(model="stub-model", base_urls=["http://x/v1"]).model_frame(320, 240) == (320, 240)


def test_retry_after_forms():
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    date = "Wed, 21 Oct 2015 07:28:00 GMT"  # in the past: no wait
    assert retry_after_s({"retry-after": date}) == 0.0
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


# --------------------------------------------------------------------------- faults within a call


def test_transient_faults_are_retried_until_an_answer(servers, clip):
    plan = iter([Fault("status", 500), Fault("status", 503), Fault("reset"), Fault("slow", seconds=1.2), None])
    stub, url = servers(fault=lambda seen: next(plan, None))
    model = served(url, request_timeout=0.5)
    call = ask(model, clip, Request("generate", None, "generate.txt", "Box it."))
    assert call.error is None and json.loads(call.answers[0])["bbox"] == [4, 4, 28, 40]
    kinds = [s.fault.kind if s.fault else None for s in stub.requests()]
    assert kinds == ["status", "status", "reset", "slow", None]
    assert call.usage.model_calls == 1  # one call, whatever it took
    assert call.attempts == 5 and call.server == url  # recorded with the call, so the trace shows them
    assert model.server_stats()[0] | {"url": None} == {
        "url": None,
        "sent": 5,
        "failed": 4,
        "in_flight": 0,
        "down": False,
    }


def test_retry_after_is_honoured_and_capped(servers, clip):
    plan = iter([Fault("status", 429, retry_after="0.3"), None, Fault("status", 429, retry_after="30"), None])
    stub, url = servers(fault=lambda seen: next(plan, None))
    model = served(url, backoff_max=0.2)
    ask(model, clip, Request("audio", None, "audio.txt", "Name it.", media=("audio",)))
    first, second = stub.requests()
    assert second.start - first.end >= 0.2  # waited for Retry-After (capped at backoff_max = 0.2)
    start = time.perf_counter()
    ask(model, clip, Request("audio", None, "audio.txt", "Name it.", media=("audio",)))
    assert 0.2 <= time.perf_counter() - start < 5  # "30 s" was capped at backoff_max


def test_a_fault_that_persists_fails_the_call_after_the_retries(servers, clip):
    stub, url = servers(fault=lambda seen: Fault("status", 503))
    call = ask(served(url, max_retries=2), clip, Request("refine", 0, "refine.txt", "Refine."))
    assert len(stub.requests()) == 3 and call.answers == []
    assert call.error.startswith("BackendUnavailable: ") and "HTTP 503" in call.error and "attempt 3 of 3" in call.error
    assert is_backend_fault(call.error)


def test_a_body_that_is_json_but_no_completion_is_an_error_for_that_call_not_a_crash(servers, clip):
    stub, url = servers(fault=lambda seen: Fault("no_choices"))
    call = ask(served(url), clip, Request("generate", None, "generate.txt", "Box it."))
    assert len(stub.requests()) == 1  # not retried: the server did answer, and would answer so again
    assert call.error.startswith("MalformedResponse: ") and "malformed body" in call.error
    assert is_backend_fault(call.error)


def test_a_cut_off_body_is_retried_like_a_5xx_and_counts_toward_the_breaker(servers, clip):
    plan = iter([Fault("malformed"), Fault("malformed"), None])
    stub, url = servers(fault=lambda seen: next(plan, None))
    model = served(url)
    call = ask(model, clip, Request("generate", None, "generate.txt", "Box it."))
    assert call.error is None and json.loads(call.answers[0])["bbox"] == [4, 4, 28, 40]
    assert len(stub.requests()) == 3 and call.attempts == 3
    # one that persists: bounded retries, then one line naming what came back
    stub.fault = lambda seen: Fault("malformed")
    stub.reset_record()
    model = served(url, max_retries=2, breaker_failures=3, breaker_cooloff=60)
    call = ask(model, clip, Request("generate", None, "generate.txt", "Box it."))
    assert len(stub.requests()) == 3 and call.answers == []
    assert call.error.startswith("BackendUnavailable: ") and "attempt 3 of 3" in call.error
    assert "HTTP 200 with a body that is not JSON" in call.error and "\n" not in call.error
    assert is_backend_fault(call.error)
    assert model.server_stats()[0]["down"]  # three cut-off bodies in a row: the server is skipped


class PeakRss:
    """The largest growth of this process's resident memory while in the block (sampled every 2 ms)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
@pytest.mark.parametrize(
    "fault",
    [
        Fault("huge"),  # 200 MB, chunked: only counting while reading can stop it
        Fault("huge", declared=True),  # 200 MB with its Content-Length: refused before reading
        Fault("endless"),  # a chunked body that never ends
        Fault("gzip_bomb", size=64 * 2**20),  # 64 KB on the wire, 64 MB once inflated
    ],
    ids=["huge", "huge-declared", "endless", "gzip-bomb"],
)
def test_a_runaway_body_fails_its_call_at_the_cap_in_bounded_memory(servers, clip, fault):
    stub, url = servers(fault=lambda seen: fault if seen.stage == "generate" else None)
    model = served(url, request_timeout=60)
    assert ask(model, clip, Request("audio", None, "audio.txt", "Name it.", media=())).error is None  # warm
    start = time.perf_counter()
    with PeakRss() as rss:
        call = ask(model, clip, Request("generate", None, "generate.txt", "Box it."))
    took = time.perf_counter() - start
    assert call.answers == [] and call.error.startswith("MalformedResponse: ")
    assert "body over the 16777216-byte cap" in call.error and "--max-response-bytes" in call.error
    assert "\n" not in call.error and is_backend_fault(call.error)  # gar eval runs it again next time
    assert len(stub.requests("generate")) == 1  # not retried: the same request would get the same body
    assert rss.growth_mb < 120, f"resident memory grew {rss.growth_mb:.0f} MB"
    assert took < 20  # stopped at the cap, not at the 60 s request timeout
    assert not model.server_stats()[0]["down"]  # the server answered: no reason to skip it
    call = ask(model, clip, Request("refine", 0, "refine.txt", "Refine."))
    assert call.error is None  # the connection that was cut is not reused


def test_max_response_bytes_is_a_flag_of_run_and_eval(servers, bench, tmp_path, capsys):
    long = {"bbox": [4, 4, 28, 40], "description": "a violin " * 1000}  # ~9 KB of answer
    stub, url = servers(answers={"generate": long})
    frames, audio, _ = bench
    args = ["run", frames / "s0001.jpg", audio / "s0001.wav", "--backend", "openai", "--base-url", url]
    args += ["--model", "stub-model", "--json", "--out", tmp_path / "o", "--trace-dir", tmp_path / "traces"]
    code = main([str(a) for a in [*args, "--max-response-bytes", "4096"]])
    result = json.loads(capsys.readouterr().out)
    assert code != 0 and "body over the 4096-byte cap" in result["error"]
    assert len(stub.requests("generate")) == 1
    code = main([str(a) for a in [*args, "--max-response-bytes", "65536"]])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["error"] is None
    out = tmp_path / "e"
    assert main(eval_args(bench, out, url, "--limit", "2", "--max-response-bytes", "4096")) == 1
    assert _metrics(out)["n_failed"] == 2


def test_refusals_are_not_retried(servers, clip):
    stub, url = servers(fault=lambda seen: Fault("status", 400))
    call = ask(served(url), clip, Request("generate", None, "generate.txt", "Box it."))
    assert len(stub.requests()) == 1 and "refused the request: HTTP 400" in call.error
    assert not is_backend_fault(call.error)  # this request is what the server rejects: a re-run would repeat it
    stub.fault = lambda seen: Fault("status", 401)
    call = ask(served(url), clip, Request("generate", None, "generate.txt", "Box it."))
    assert call.error.startswith("BackendRefused: ") and is_backend_fault(call.error)


# --------------------------------------------------------------------------- several servers


def test_requests_spread_over_servers_and_skip_a_dead_one(servers, clip):
    # long enough that all 12 calls are in flight together even on a loaded machine: with a short latency
    # the threads trickle in one by one and the clip's affinity rightly keeps them on one server
    a, url_a = servers(latency=0.5)
    b, url_b = servers(latency=0.5)
    model = served([url_a, dead_url(), url_b])
    threads = [
        threading.Thread(target=lambda: ask(model, clip, Request("audio", None, "a.txt", "x", media=("audio",))))
        for _ in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = {s["url"]: s for s in model.server_stats()}
    assert len(a.requests()) + len(b.requests()) == 12  # every call answered once
    assert min(len(a.requests()), len(b.requests())) >= 4  # the least loaded took turns
    dead = next(s for url, s in stats.items() if url not in (url_a, url_b))
    assert dead["failed"] == dead["sent"] >= 1 and all(s["in_flight"] == 0 for s in stats.values())


def test_a_clips_calls_stay_on_one_server_for_its_prefix_cache(servers, bench, tmp_path):
    a, url_a = servers(latency=0.02)
    b, url_b = servers(latency=0.02)
    assert main(eval_args(bench, tmp_path / "out", [url_a, url_b], "--workers", "2")) == 0
    clips_a, clips_b = set(a.clips()), set(b.clips())
    assert len(clips_a | clips_b) == 12 and not clips_a & clips_b  # every clip on one server only
    assert min(len(clips_a), len(clips_b)) >= 3  # and the clips are spread over both


# --------------------------------------------------------------------------- gar eval


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _check_complete(out: Path, ids: list[str]) -> None:
    """Every sample stored once, succeeded, with exactly the calls and votes of one run."""
    assert sorted(p.stem for p in (out / "samples").glob("*.json")) == ids
    for sid in ids:
        doc = json.loads((out / "samples" / f"{sid}.json").read_text())
        assert doc["result"]["error"] is None, sid
        assert doc["result"]["usage"]["model_calls"] == CALLS_PER_SAMPLE, sid
        assert doc["result"]["sources"][0]["analysis"]["n_votes"] == 5, sid


def test_eval_under_random_faults_loses_and_doubles_nothing(servers, bench, tmp_path):
    rng = random.Random(7)
    lock = threading.Lock()
    faults = [Fault("status", 500), Fault("status", 429, retry_after="0.01"), Fault("reset"), Fault("slow", seconds=1)]

    def fault(seen):
        with lock:
            return rng.choice(faults) if rng.random() < 0.3 else None

    stub, url = servers(latency=0.01, fault=fault)
    out = tmp_path / "out"
    code = main(eval_args(bench, out, url, "--workers", "4", "--max-retries", "10", "--request-timeout", "0.5"))
    m = _metrics(out)
    assert code == 0 and (m["n_total"], m["n_failed"]) == (12, 0)
    _check_complete(out, [f"s{i:04d}" for i in range(12)])
    faulted = [s for s in stub.requests() if s.fault is not None]
    assert len(faulted) > 5  # the faults did happen
    # one clean answer per call of each sample (a slow answer comes after the client gave up on it)
    per_clip = Counter(s.clip for s in stub.requests() if s.fault is None)
    assert sorted(per_clip.values()) == [CALLS_PER_SAMPLE] * 12


def test_a_failed_sample_is_recorded_and_only_it_is_rerun(servers, bench, tmp_path, capsys):
    keys = sample_keys(bench)
    bad = next(k for k, sid in keys.items() if sid == "s0003")
    stub, url = servers(fault=lambda seen: Fault("status", 503) if seen.clip == bad else None)
    out = tmp_path / "out"
    args = eval_args(bench, out, url, "--workers", "3", "--max-retries", "1")
    assert main(args) == 0  # one failed sample does not stop the benchmark
    err = capsys.readouterr().err
    assert "gar: note: 1 sample(s) failed on a backend fault (e.g. s0003: " in err
    assert "run the same command again to retry them" in err
    m = _metrics(out)
    assert (m["n_total"], m["n_failed"]) == (12, 1)
    (failed,) = m["failed"]
    assert failed["id"] == "s0003" and "BackendUnavailable: " in failed["error"] and "HTTP 503" in failed["error"]
    trace = json.loads((out / "traces" / "s0003" / "trace.json").read_text())
    assert "BackendUnavailable" in json.dumps(trace)  # the call's error is in the trace
    stub.fault = None  # the server recovers; the same command again redoes s0003 and nothing else
    stub.reset_record()
    assert main(args) == 0
    assert set(stub.clips()) == {bad} and len(stub.requests()) == CALLS_PER_SAMPLE
    assert _metrics(out)["n_failed"] == 0
    _check_complete(out, [f"s{i:04d}" for i in range(12)])


def test_kill_and_resume_neither_loses_nor_repeats_a_sample(servers, bench, tmp_path):
    stub, url = servers(latency=0.05)
    out = tmp_path / "out"
    args = eval_args(bench, out, url, "--workers", "2")
    proc = eval_process(args, out, 3)
    proc.kill()
    proc.communicate()
    finished = sorted(p.stem for p in (out / "samples").glob("s*.json"))
    assert 3 <= len(finished) < 12, finished
    keys = {sid: key for key, sid in sample_keys(bench).items()}
    stub.reset_record()
    assert main(args) == 0
    again = set(stub.clips())
    assert not again & {keys[sid] for sid in finished}  # nothing finished is asked again
    assert len(again) == 12 - len(finished)
    _check_complete(out, [f"s{i:04d}" for i in range(12)])


def test_at_most_w_samples_in_flight(servers, bench, tmp_path):
    stub, url = servers(latency=0.05)
    assert main(eval_args(bench, tmp_path / "out", url, "--workers", "4")) == 0
    assert stub.max_clips_in_flight == 4  # kept busy, never more
    assert len(stub.clips()) == 12


def test_duet_sources_run_their_calls_concurrently(servers, tmp_path):
    duet = make_samples(tmp_path / "duet", 1, sources=2)
    stub, url = servers(sources=2, latency=0.2)
    args = data_args("vggss-duet", duet, tmp_path / "o")
    args += ["--backend", "openai", "--base-url", url, "--model", "stub-model", "--no-vis"]
    assert main([str(a) for a in args]) == 0
    analyze = stub.requests("analyze")
    assert sorted(s.source for s in analyze) == ["0", "1"]
    first, second = sorted(analyze, key=lambda s: s.start)
    assert second.start < first.end  # both sources' votes were in flight at once
    assert stub.max_in_flight == 2


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--backend openai needs --base-url URL"),
        (["--base-url", "ftp://x"], "--base-url 'ftp://x' is not an http(s) URL"),
        (["--base-url", "http://x/v1", "--api-key-env", "GAR_TEST_UNSET_KEY"], "GAR_TEST_UNSET_KEY: that environment"),
    ],
)
def test_bad_serving_options_are_one_line_errors(bench, tmp_path, capsys, extra, message):
    args = data_args("vggss-single", bench, tmp_path / "o")
    code = main([str(a) for a in [*args, "--backend", "openai", "--model", "m", *extra]])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gar: error: ") and message in err and err.count("\n") == 1


def test_serving_flags_with_another_backend_are_refused(bench, tmp_path, capsys):
    frames, audio, _ = bench
    args = [
        "run",
        frames / "s0000.jpg",
        audio / "s0000.wav",
        "--backend",
        "scripted:x.json",
        "--base-url",
        "http://x/v1",
    ]
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and "gar: error: --base-url is for --backend openai, not --backend scripted:x.json" in err


def test_gar_run_against_a_server(servers, bench, tmp_path, capsys):
    stub, url = servers(cached_tokens=900)
    frames, audio, _ = bench
    args = ["run", frames / "s0001.jpg", audio / "s0001.wav", "--backend", "openai", "--base-url", url]
    args += ["--model", "stub-model", "--json", "--out", tmp_path / "o", "--trace-dir", tmp_path / "traces"]
    code = main([str(a) for a in args])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["error"] is None and result["sources"][0]["box"] == [4, 4, 28, 40]
    assert result["usage"]["model_calls"] == CALLS_PER_SAMPLE and result["usage"]["cached_input_tokens"] == 900 * 4
    requests = stub.requests()
    assert [s.stage for s in requests] == ["audio", "generate", "analyze", "refine"]
    # prefix sharing: one system message for every call, then the media, the text last
    system = requests[0].body["messages"][0]
    assert system["role"] == "system" and all(r.body["messages"][0] == system for r in requests)
    parts = [[p["type"] for p in r.body["messages"][1]["content"]] for r in requests]
    # audio first: the audio-only call shares the system message and the audio with every other call
    assert parts == [["input_audio", "text"]] + [["input_audio", "image_url", "text"]] * 3
    media = [r.body["messages"][1]["content"][:-1] for r in requests[1:]]
    assert media[0] == media[1] == media[2]  # byte-identical audio and image in the three image calls
    assert all(m[0] == requests[0].body["messages"][1]["content"][0] for m in media)  # the same audio block


# --------------------------------------------------------------------------- dead servers: the circuit breaker


def test_circuit_breaker_opens_probes_and_closes():
    pool = ServerPool(["http://a/v1", "http://b/v1"], failures=2, cooloff_s=0.05)
    a, b = pool.servers
    for _ in range(5):  # 429s are a live server asking us to slow down: never counted
        pool.release(pool.acquire(avoid=b), "HTTP 429: slow down", dead=False)
    for _ in range(2):
        assert pool.acquire(avoid=b) is a
        pool.release(a, "connection failed (ClientConnectorError)", dead=True)
    assert [pool.acquire() for _ in range(3)] == [b, b, b]  # a is skipped while it cools off
    for _ in range(3):
        pool.release(b)
    assert [s["down"] for s in pool.stats()] == [True, False]
    time.sleep(0.06)
    probe = pool.acquire(avoid=b)
    assert probe is a and pool.acquire(avoid=b) is b  # one probe at a time; meanwhile a stays skipped
    pool.release(b)
    pool.release(a)  # the probe was answered: a is back
    assert [s["down"] for s in pool.stats()] == [False, False] and pool.down() is None
    for s in (a, b):
        for _ in range(2):
            pool.release(pool.acquire(avoid=a if s is b else b), "HTTP 502: bad gateway", dead=True)
    with pytest.raises(AllServersDown, match=r"every server is down: http://a/v1 \(HTTP 502: bad gateway; 2 failures"):
        pool.acquire()
    assert pool.down().startswith("every server is down: ")


def test_a_dead_server_costs_a_few_requests_not_one_per_call(servers, clip):
    live, url = servers()
    dead = dead_url()
    model = served([dead, url], breaker_failures=2, breaker_cooloff=60)
    for _ in range(10):  # text only: no clip to keep on one server, so each call goes to the least loaded
        call = ask(model, clip, Request("audio", None, "audio.txt", "Name it.", media=()))
        assert call.error is None and call.server == url
    stats = {s["url"]: s for s in model.server_stats()}
    assert stats[dead]["sent"] == 2 and stats[dead]["down"]  # then skipped: no request waits on it
    assert stats[url]["sent"] == 10 and not stats[url]["down"]


def test_eval_stops_when_every_server_is_down_and_resumes_on_a_live_one(servers, bench, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(eval_args(bench, out, dead_url(), "--workers", "2", "--max-retries", "2"))
    err = capsys.readouterr().err
    assert code == 1 and "every server is down: " in err and "run the same command again" in err, err
    stopped = sorted(p.stem for p in (out / "samples").glob("s*.json"))
    assert 1 <= len(stopped) < 12  # stopped early, not one retry schedule per remaining sample
    stub, url = servers()  # a server is back (here, at another address)
    assert main(eval_args(bench, out, url, "--workers", "2")) == 0
    assert _metrics(out)["n_failed"] == 0
    assert len(stub.clips()) == 12  # the failed ones were retried, the rest run once
    _check_complete(out, [f"s{i:04d}" for i in range(12)])


def test_ctrl_c_lets_the_running_samples_finish_and_resume_repeats_none(servers, bench, tmp_path):
    stub, url = servers(latency=0.1)
    out = tmp_path / "out"
    args = eval_args(bench, out, url, "--workers", "3")
    proc = eval_process(args, out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"run the same command again to resume" in err, err
    finished = sorted(p.stem for p in (out / "samples").glob("s*.json"))
    assert 2 <= len(finished) < 12
    keys = {sid: key for key, sid in sample_keys(bench).items()}
    started = set(stub.clips())
    assert started == {keys[sid] for sid in finished}  # every sample it started, it finished and wrote
    stub.reset_record()
    assert main(args) == 0
    assert not set(stub.clips()) & started and len(stub.clips()) == 12 - len(finished)
    _check_complete(out, [f"s{i:04d}" for i in range(12)])


def test_gar_eval_gives_a_served_model_a_process_per_16_samples_in_flight(monkeypatch):
    from gar_agent.eval.execute import auto_processes
    from gar_agent.models.scripted import ScriptedChatModel

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    model = served("http://127.0.0.1:9/v1")
    assert [auto_processes(model, w) for w in (1, 16, 31, 32, 64, 256)] == [1, 1, 1, 2, 4, 4]  # at most one per CPU
    assert auto_processes(ScriptedChatModel(script={"audio": ["x"]}), 256) == 1  # not served: one process


def test_the_openai_package_neither_shadows_the_sdk_nor_loads_it_for_gar_eval():
    # gar eval imports is_backend_fault for every backend: that must not pull in langchain-openai and
    # aiohttp; and our package named `openai` must leave `import openai` to the real SDK.
    code = (
        "import sys\n"
        "import gar_agent.eval.execute\n"
        "from gar_agent.models.openai import is_backend_fault\n"
        "assert 'langchain_openai' not in sys.modules and 'aiohttp' not in sys.modules, 'loaded eagerly'\n"
        "import openai, langchain_openai\n"
        "assert hasattr(openai, 'AsyncOpenAI'), openai.__file__\n"
        "from gar_agent.models.openai import ChatOpenAIServed, from_options\n"
        "assert isinstance(from_options('m', base_urls=['http://127.0.0.1:9/v1']), ChatOpenAIServed)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
