"""LangChain messages and content blocks -> the processor's conversation items (Qwen-Omni's chat template)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from langchain_core.messages import BaseMessage, ChatMessage

from gar_agent.media import decode_audio
from gar_agent.models.qwen_omni.media import MediaRef


class ContentBlockError(ValueError):
    """A message content block this adapter cannot turn into model input."""


def _bytes_from_url(url: str) -> bytes | str:
    """Bytes of a data: URI, else a local filesystem path (file:// stripped)."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header:
            return unquote(data).encode()
        return base64.b64decode(data)
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    if url.startswith(("http://", "https://")):
        raise ContentBlockError(f"remote media URLs are not fetched by the local model: {url[:80]}")
    return url


def _load_image(src: bytes | str) -> Any:
    from PIL import Image

    if isinstance(src, str):
        if not Path(src).is_file():
            raise ContentBlockError(f"image file not found: {src}")
        with Image.open(src) as im:
            return im.convert("RGB")
    with Image.open(io.BytesIO(src)) as im:
        return im.convert("RGB")


def _load_audio(src: bytes | str) -> Any:
    if isinstance(src, str) and not Path(src).is_file():
        raise ContentBlockError(f"audio file not found: {src}")
    return decode_audio(src)


def _media_source(block: dict, kind: str) -> bytes | str:
    """The bytes or path of an image/audio block in any of LangChain's standard forms."""
    b64 = block.get("base64") or (block.get("data") if block.get("source_type", "base64") == "base64" else None)
    if isinstance(b64, str):
        return base64.b64decode(b64)
    for key in ("url", "path", "file_path"):
        if isinstance(block.get(key), str):
            return _bytes_from_url(block[key])
    raise ContentBlockError(f"{kind} block has no base64, url or path: keys {sorted(block)}")


def _media_ref(kind: Literal["image", "audio"], src: bytes | str) -> dict:
    """A media item by content: the bytes (a path is read now) and their hash, decoded only on a cache miss."""
    if isinstance(src, str):
        if not Path(src).is_file():
            raise ContentBlockError(f"{kind} file not found: {src}")
        src = Path(src).read_bytes()
    return {"type": kind, "ref": MediaRef.of(kind, src)}


def _convert_block(block: Any, role: str, refs: bool = False) -> dict | None:
    """One LangChain content block -> one processor item ({"type": "text"|"image"|"audio", ...}).

    With `refs`, media items carry a `MediaRef` (bytes + hash) instead of the decoded image/waveform.
    """
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if not isinstance(block, dict):
        raise ContentBlockError(f"unsupported content block of type {type(block).__name__}")
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    src: bytes | str
    if kind in ("image", "image_url"):
        if kind == "image":
            src = _media_source(block, "image")
        else:
            ref = block.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str):
                raise ContentBlockError("image_url block without a url")
            src = _bytes_from_url(url)
        return _media_ref("image", src) if refs else {"type": "image", "image": _load_image(src)}
    if kind in ("audio", "input_audio"):
        if kind == "audio":
            src = _media_source(block, "audio")
        else:
            data = (block.get("input_audio") or {}).get("data")
            if not isinstance(data, str):
                raise ContentBlockError("input_audio block without base64 data")
            src = base64.b64decode(data)
        return _media_ref("audio", src) if refs else {"type": "audio", "audio": _load_audio(src)}
    if role == "assistant" and kind in ("reasoning", "tool_call", "tool_call_chunk"):
        return None  # not part of what the model reads back
    raise ContentBlockError(
        f"unsupported content block type {kind!r} (supported: text, image, image_url, audio, input_audio)"
    )


_ROLES = {"system": "system", "human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}


def to_conversation(messages: Sequence[BaseMessage], refs: bool = False) -> list[dict]:
    """LangChain messages -> the processor's chat-template conversation with decoded media (or `MediaRef`s)."""
    conversation = []
    for msg in messages:
        role = _ROLES.get(msg.role if isinstance(msg, ChatMessage) else msg.type)
        if role is None:
            raise ContentBlockError(f"unsupported message type {msg.type!r} (system, human and ai only)")
        blocks = [msg.content] if isinstance(msg.content, str) else msg.content
        items = [item for b in blocks if (item := _convert_block(b, role, refs)) is not None]
        conversation.append({"role": role, "content": items})
    return conversation
