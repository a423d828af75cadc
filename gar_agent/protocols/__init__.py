"""Protocols: what differs between the project's own method (`gar`) and the released code (`reference`).

The interface is `gar_agent.protocols.base.GarProtocol` (what the nodes call, typed); the
implementations are registered by name in `gar_agent.registry.PROTOCOLS` and imported when a run
asks for one. A researcher's own registers itself the same way (README: "Your own protocol").
"""

from __future__ import annotations

from gar_agent.protocols.base import GarProtocol
from gar_agent.registry import PROTOCOLS


def protocol(name: str) -> GarProtocol:
    """The protocol registered under a name (RegistryError listing the names if there is none)."""
    return PROTOCOLS.get(name)
