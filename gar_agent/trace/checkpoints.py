"""LangGraph checkpoint stores: SQLite by default (every super-step listable), Postgres for teams."""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

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
