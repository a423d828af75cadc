"""A chat-completions server for tests and the serving benchmark: real HTTP on 127.0.0.1.

`StubServer` is a Starlette app under uvicorn in a background thread (or, run as a script, in its
own process). It speaks enough of the OpenAI chat-completions API for `ChatOpenAIServed`: answers
come from a script per GAR stage (read from the `X-Gar-Stage` / `X-Gar-Source` headers the client
sends), `n` choices per request, usage with cached prompt tokens, a fixed simulated latency that
costs no server thread (`asyncio.sleep`), and injected faults chosen per request by a callable:
an HTTP status (with `Retry-After`), a slow answer, a malformed (cut-off JSON) body, a body with
no choices, a connection dropped in the middle of the answer, and bodies that would exhaust a
client's memory: a huge one (streamed, with or without its length declared), an endless chunked
one, and a small gzip body that inflates to a huge one. The huge bodies are streamed from one
repeated chunk, so the server itself stays small.

Every request is recorded (JSON body, headers, the clip it belongs to, the fault it got), with
the most requests and the most distinct clips ever in flight at once. A clip is identified by the
sha1 of its base64 audio, which every call of a clip carries.

    python tests/openai_stub.py --port 8011 --latency 0.2     # for scripts/bench_serving.py
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import json
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile as sf
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Fault:
    """What the server does instead of (or before) answering one request."""

    kind: str  # "status" | "slow" | "malformed" | "no_choices" | "reset" | "huge" | "endless" | "gzip_bomb"
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    size: int = 200 * 1024 * 1024  # bytes of a huge body (inflated size of a gzip bomb)
    declared: bool = False  # a huge body sends its Content-Length (else chunked)


@dataclass
class Seen:
    """One request as the server received it."""

    body: dict
    headers: dict[str, str]
    clip: str | None
    stage: str | None
    source: str | None
    fault: Fault | None
    start: float
    end: float = 0.0


def vote(av: float = 0.3, keep: bool = True) -> dict:
    """An analysis answer (av 0.3: the gate sends the source to Refine with the default tau_av)."""
    return {
        "av_consistency": av,
        "keep": keep,
        "role_tags": ["body"],
        "anchor_votes": [{"anchor": "body", "score": 0.9}],
    }


def default_answers(sources: int, box: list[int] | None = None) -> dict[str, Any]:
    """A well-formed answer per stage for K sources (boxes inside a 64x48 frame)."""
    boxes = [[4, 4, 28, 40], [34, 4, 60, 40]][:sources] if box is None else [box]
    if sources == 1:
        audio = {"audio_class": "violin", "audio_confidence_score": 0.9}
        generate = {"bbox": boxes[0], "description": "a violin"}
    else:
        audio = {"audio_classes": ["violin", "cello"], "audio_confidence_scores": [0.9, 0.9]}
        generate = {"bboxes": boxes, "descriptions": ["a violin", "a cello"]}
    return {"audio": audio, "generate": generate, "analyze": vote(), "refine": {"changed": False}}


def clip_key(body: dict) -> str | None:
    """The sha1 of the first input_audio data in a request (every call of a clip carries it)."""
    for message in body.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "input_audio":
                return hashlib.sha1(part["input_audio"]["data"].encode()).hexdigest()
    return None


def audio_key(wav_bytes: bytes) -> str:
    """The key clip_key computes for a clip whose audio the client sends as these WAV bytes."""
    return hashlib.sha1(base64.b64encode(wav_bytes)).hexdigest()


@dataclass
class StubServer:
    """The server, its script and its record; `start()` returns the base URL (…/v1)."""

    sources: int = 1
    latency: float = 0.0
    answers: dict[str, Any] = field(default_factory=dict)  # stage -> answer (str or JSON value)
    fault: Callable[[Seen], Fault | None] | None = None
    prompt_tokens: int = 1000
    cached_tokens: int | None = None
    seen: list[Seen] = field(default_factory=list)
    max_in_flight: int = 0
    max_clips_in_flight: int = 0

    def __post_init__(self) -> None:
        self.answers = {**default_answers(self.sources), **self.answers}
        self._lock = threading.Lock()
        self._in_flight: list[Seen] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    # -- record keeping

    def requests(self, stage: str | None = None) -> list[Seen]:
        """The requests received so far (of one stage), in arrival order."""
        with self._lock:
            return [s for s in self.seen if stage is None or s.stage == stage]

    def clips(self) -> Counter:
        """Requests per clip key."""
        return Counter(s.clip for s in self.requests())

    def reset_record(self) -> None:
        """Forget what was received (the script and faults stay)."""
        with self._lock:
            self.seen.clear()
            self.max_in_flight = self.max_clips_in_flight = 0

    def _enter(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            self._in_flight.append(seen)
            self.max_in_flight = max(self.max_in_flight, len(self._in_flight))
            self.max_clips_in_flight = max(self.max_clips_in_flight, len({s.clip for s in self._in_flight}))

    def _leave(self, seen: Seen) -> None:
        with self._lock:
            seen.end = time.perf_counter()
            self._in_flight.remove(seen)

    # -- the endpoint

    def _completion(self, body: dict, stage: str | None) -> dict:
        n = int(body.get("n") or 1)
        answer = self.answers.get(stage or "", "{}")
        text = answer if isinstance(answer, str) else json.dumps(answer)
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": 10 * n,
            "total_tokens": self.prompt_tokens + 10 * n,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return {
            "id": f"chatcmpl-{len(self.seen)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                for i in range(n)
            ],
            "usage": usage,
        }

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        seen = Seen(
            body=body,
            headers=dict(request.headers),
            clip=clip_key(body),
            stage=request.headers.get("x-gar-stage"),
            source=request.headers.get("x-gar-source"),
            fault=None,
            start=time.perf_counter(),
        )
        seen.fault = self.fault(seen) if self.fault else None
        self._enter(seen)
        try:
            return await self._answer(seen)
        finally:
            self._leave(seen)

    async def _answer(self, seen: Seen) -> Response:
        fault = seen.fault
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            error = {"error": {"message": f"injected {fault.status}", "type": "stub", "code": fault.status}}
            return JSONResponse(error, status_code=fault.status, headers=headers)
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "malformed":
            return Response('{"id": "x", "choices": [{"index": 0, "mess', media_type="application/json")
        if fault is not None and fault.kind == "no_choices":
            return JSONResponse({"id": "x", "object": "chat.completion", "model": "stub"})
        if fault is not None and fault.kind == "reset":
            return _Dropped()
        if fault is not None and fault.kind in ("huge", "endless"):
            size = fault.size if fault.kind == "huge" else None
            headers = {"content-length": str(fault.size)} if size is not None and fault.declared else None
            return StreamingResponse(_filler(size), media_type="application/json", headers=headers)
        if fault is not None and fault.kind == "gzip_bomb":
            return Response(_bomb(fault.size), media_type="application/json", headers={"content-encoding": "gzip"})
        return JSONResponse(self._completion(seen.body, seen.stage))

    # -- running

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (a free port unless given) in a background thread; the base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(self.app, lifespan="off", log_level="critical", backlog=4096, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the stub server did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)


class _Dropped(Response):
    """Headers promising a body, half of it, then the connection is dropped (a reset mid-answer)."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope, receive, send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"id": "chatcmpl-', "more_body": True})
        raise ConnectionResetError("injected: connection dropped mid-answer")


_CHUNK = b"x" * (1024 * 1024)


async def _filler(size: int | None):
    """A chat completion's opening then `size` bytes in total (None: forever), one repeated 1 MiB chunk."""
    head = b'{"id": "chatcmpl-huge", "choices": [{"index": 0, "message": {"role": "assistant", "content": "'
    yield head
    left = None if size is None else size - len(head)
    while left is None or left > 0:
        chunk = _CHUNK if left is None or left >= len(_CHUNK) else _CHUNK[:left]
        yield chunk
        if left is not None:
            left -= len(chunk)
        await asyncio.sleep(0)  # let the server notice a client that hung up


@functools.lru_cache(maxsize=4)
def _bomb(size: int) -> bytes:
    """gzip of a `size`-byte body of one repeated byte (about size/1000 bytes on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    parts = [packer.compress(b'{"id": "chatcmpl-bomb", "choices": [{"index": 0, "message": {"content": "')]
    parts += [packer.compress(_CHUNK) for _ in range(size // len(_CHUNK))]
    return b"".join(parts) + packer.flush()


def dead_url() -> str:
    """A base URL nothing listens on (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


# --------------------------------------------------------------------------- generated benchmarks


def make_samples(root: Path, count: int, sources: int = 1, seconds: float = 0.5) -> tuple[Path, Path, Path]:
    """`count` clips (64x48 frames, distinct tones) and a GT file: vggss-single (K=1) or vggss-duet (K=2).

    Returns (frames dir, audio dir, GT file).
    """
    frames, audio = root / "frames", root / "audio"
    frames.mkdir(parents=True, exist_ok=True)
    audio.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    records = []
    for i in range(count):
        sid = f"s{i:04d}"
        img = np.zeros((48, 64, 3), np.uint8)
        img[4:41, 4 : 29 if sources == 1 else 61] = 200
        cv2.imwrite(str(frames / f"{sid}.jpg"), img)
        tone = 0.3 * np.sin(2 * np.pi * (200 + 7 * i) * t)  # a distinct clip per sample
        sf.write(audio / f"{sid}.wav", tone.astype(np.float32), 16000, subtype="PCM_16")
        if sources == 1:
            records.append({"file": sid, "class": "violin", "bbox": [[4 / 64, 4 / 48, 28 / 64, 40 / 48]]})
        else:
            records.append(
                {
                    "file": sid,
                    "class_src1": "violin",
                    "bbox_src1": [4 / 64, 4 / 48, 28 / 64, 40 / 48],
                    "class_src2": "cello",
                    "bbox_src2": [34 / 64, 4 / 48, 60 / 64, 40 / 48],
                }
            )
    gt = root / "gt.json"
    gt.write_text(json.dumps(records))
    return frames, audio, gt


def main() -> None:
    """Serve until killed (the benchmark runs it in its own process, off the client's GIL)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--sources", type=int, default=1)
    args = parser.parse_args()
    server = StubServer(sources=args.sources, latency=args.latency)
    print(server.start(args.port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
