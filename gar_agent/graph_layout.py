"""Layering of a graph for drawing (the terminal/PNG drawing and the viewer's SVG share it)."""

from __future__ import annotations


def layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of each node, left to right, over the graph without its back edges.

    Back edges (the Analyze loop) are found by a depth-first search from `__start__`; edges naming
    an unknown node and self-loops are ignored. Linear in nodes + edges and without recursion: a
    trace is untrusted, and its graph may hold thousands of nodes or one long chain.
    """
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for u, v in edges:
        if u in out and v in out and u != v:
            out[u].append(v)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    back: set[tuple[str, str]] = set()
    order: list[str] = []  # post-order: reversed, a topological order of the graph without back edges
    for root in [*(x for x in nodes if x == "__start__"), *nodes]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(out[root]))]
        while stack:
            u, children = stack[-1]
            for v in children:
                if state.get(v) == 1:
                    back.add((u, v))
                elif v not in state:
                    state[v] = 1
                    stack.append((v, iter(out[v])))
                    break
            else:
                state[u] = 2
                order.append(u)
                stack.pop()
    layer = {n: 0 for n in nodes}
    for u in reversed(order):
        for v in out[u]:
            if (u, v) not in back and layer[v] < layer[u] + 1:
                layer[v] = layer[u] + 1
    return layer
