"""LangGraph checkpoint stores: SQLite by default (every super-step listable), Postgres for teams."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

from gar_agent import state as state_module
from gar_agent.errors import UserError
from gar_agent.extras import install_command


def serializer() -> JsonPlusSerializer:
    """A serializer that knows the state's pydantic types (no 'unregistered type' warnings)."""
    allowed = [
        (state_module.__name__, name)
        for name, obj in vars(state_module).items()
        if inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == state_module.__name__
    ]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def memory_saver() -> InMemorySaver:
    """Checkpoints in memory (tests, throw-away forks)."""
    return InMemorySaver(serde=serializer())


def sqlite_saver(path: str | Path):
    """Checkpoints in a SQLite file (created if absent)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn, serde=serializer())


def postgres_saver(conn_string: str):
    """Checkpoints in Postgres (needs the `postgres` extra); the tables are created on first use."""
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
    except ImportError:
        raise UserError(f"Postgres checkpoints need: {install_command('postgres')}") from None
    conn = Connection.connect(conn_string, autocommit=True, prepare_threshold=0)
    saver = PostgresSaver(conn, serde=serializer())
    saver.setup()
    return saver


def open_checkpointer(spec: str | None, default_dir: str | Path):
    """`None` -> SQLite under the trace dir; `memory`; `sqlite:PATH`; `postgresql://...`."""
    if spec is None:
        return sqlite_saver(Path(default_dir) / "checkpoints.sqlite")
    if spec == "memory":
        return memory_saver()
    if spec.startswith("sqlite:"):
        return sqlite_saver(spec.split(":", 1)[1])
    if spec.startswith(("postgres://", "postgresql://")):
        return postgres_saver(spec)
    raise UserError(f"--checkpoints {spec!r}: use memory, sqlite:PATH or a postgresql:// connection string")


class ThreadedSaver(BaseCheckpointSaver):
    """A sync-only checkpointer (SqliteSaver, PostgresSaver) seen through LangGraph's async API.

    Runs are async at their core (gar_agent/run.py), and LangGraph's async API calls `aget_tuple`,
    `aput`, ... which those savers refuse (NotImplementedError). Here each async call is the sync
    one in a worker thread, so the event loop never waits on the database; the caller's saver is
    the one written (its sync API reads the same checkpoints afterwards). The sync methods pass through.
    """

    def __init__(self, inner: BaseCheckpointSaver) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner

    @property
    def config_specs(self) -> list:
        return self.inner.config_specs

    def get_tuple(self, config):
        return self.inner.get_tuple(config)

    def list(self, config, *, filter=None, before=None, limit=None):
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def put(self, config, checkpoint, metadata, new_versions):
        return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(self, config, writes, task_id, task_path=""):
        return self.inner.put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id):
        return self.inner.delete_thread(thread_id)

    def get_next_version(self, current, channel):
        return self.inner.get_next_version(current, channel)

    def get_delta_channel_history(self, *, config, channels):
        return self.inner.get_delta_channel_history(config=config, channels=channels)

    async def aget_tuple(self, config):
        return await asyncio.to_thread(self.inner.get_tuple, config)

    async def alist(self, config, *, filter=None, before=None, limit=None) -> AsyncIterator[Any]:
        found = await asyncio.to_thread(
            lambda: list(self.inner.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        return await asyncio.to_thread(self.inner.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        return await asyncio.to_thread(self.inner.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id):
        return await asyncio.to_thread(self.inner.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *, config, channels):
        return await asyncio.to_thread(self.inner.get_delta_channel_history, config=config, channels=channels)


_SYNC_ONLY = ("SqliteSaver", "PostgresSaver", "ShallowPostgresSaver")  # their async methods raise NotImplementedError


def sync_only(saver: BaseCheckpointSaver) -> bool:
    """Whether a checkpointer lacks LangGraph's async API (it keeps the base class's, or refuses it)."""
    if type(saver).aget_tuple is BaseCheckpointSaver.aget_tuple:
        return True
    return any(
        c.__name__ in _SYNC_ONLY and c.__module__.startswith("langgraph.checkpoint") for c in type(saver).__mro__
    )


def for_async(saver: BaseCheckpointSaver | None) -> BaseCheckpointSaver | None:
    """A checkpointer that LangGraph's async API can use: the memory saver and the async savers
    (AsyncSqliteSaver, AsyncPostgresSaver, a researcher's own) as they are, a sync-only one through
    ThreadedSaver."""
    return ThreadedSaver(saver) if saver is not None and sync_only(saver) else saver
