"""The run context moved to gar_agent/context.py (the protocols use it too, and they sit below the nodes).

Kept so graph files and notebooks that import `gar_agent.nodes.context.GarContext` keep working.
"""

from gar_agent.context import GarContext

__all__ = ["GarContext"]
