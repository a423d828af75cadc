"""Layering of a graph for drawing (the terminal/PNG drawing and the viewer's SVG share it)."""

from __future__ import annotations


def layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of each node, left to right, over the graph without its back edges.

    Back edges (the Analyze loop) are found by a depth-first search from `__start__`; edges naming
    an unknown node and self-loops are ignored.
    """
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for u, v in edges:
        if u in out and v in out and u != v:
            out[u].append(v)
    state: dict[str, int] = {}
    back: set[tuple[str, str]] = set()

    def dfs(u: str) -> None:
        state[u] = 1
        for v in out[u]:
            if state.get(v) == 1:
                back.add((u, v))
            elif v not in state:
                dfs(v)
        state[u] = 2

    for n in [*(x for x in nodes if x == "__start__"), *nodes]:
        if n not in state:
            dfs(n)
    layer = {n: 0 for n in nodes}
    for _ in range(len(nodes)):  # relax: a DAG settles in at most len(nodes) rounds
        changed = False
        for u in nodes:
            for v in out[u]:
                if (u, v) not in back and layer[v] < layer[u] + 1:
                    layer[v] = layer[u] + 1
                    changed = True
        if not changed:
            break
    return layer
