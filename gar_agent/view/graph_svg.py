"""A recorded topology drawn as an SVG, with the path one run took through it highlighted.

The trace records the graph as LangGraph draws it with subgraphs expanded: node ids like
`localize:analyze` and edges (source, target, conditional). Nodes are laid out left to right in
layers (longest path from `__start__`, back edges ignored); a subgraph gets a frame. No external
library draws it, so the page works offline and in an exported file.
"""

from __future__ import annotations

from html import escape

from gar_agent.graph_layout import layers

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 100, 32, 30, 24, 20
MAX_DRAWN = 300  # the shipped graphs have ~15 nodes; a page of thousands is neither readable nor quick
ENDS = ("__start__", "__end__")


def taken_path(edges, steps: list[tuple[str, int | None]]) -> tuple[set[str], set[tuple[str, str]]]:
    """(nodes, edges) a run went through, from its steps' (graph node, source) in order.

    Steps inside a subgraph (`sub:node`) form one walk per (subgraph, source) branch, entered from
    the last run-level node before them and left to the next run-level node (or `__end__`).
    """
    pairs: set[tuple[str, str]] = set()
    branches: dict[tuple[str, int | None], list[str]] = {}
    last_top = "__start__"

    def close(next_top: str) -> None:
        for (prefix, _), walk in branches.items():
            seq = [last_top, f"{prefix}:__start__", *walk, f"{prefix}:__end__", next_top]
            pairs.update(zip(seq, seq[1:]))
        branches.clear()

    for node, source in steps:
        if ":" in node:
            branches.setdefault((node.split(":")[0], source), []).append(node)
            continue
        if branches:
            close(node)
        else:
            pairs.add((last_top, node))
        last_top = node
    if branches:
        close("__end__")
    else:
        pairs.add((last_top, "__end__"))
    known = {(u, v) for u, v, *_ in edges}
    taken = {p for p in pairs if p in known}
    return {n for p in taken for n in p}, taken


def graph_svg(nodes: list[str], edges, path_nodes: set[str], path_edges: set[tuple[str, str]]) -> str:
    """The topology as inline SVG; `data-node` / `data-edge` let the page mark the selected step.

    A graph of more than MAX_DRAWN nodes (a trace is untrusted; no real topology comes close) is
    drawn up to its first MAX_DRAWN nodes by layer, with a notice saying how many are left out.
    """
    pairs = [(u, v) for u, v, *_ in edges]
    layer = layers(nodes, pairs)
    hidden = 0
    if len(layer) > MAX_DRAWN:
        order = {n: i for i, n in enumerate(layer)}
        kept = set(sorted(layer, key=lambda n: (layer[n], order[n]))[:MAX_DRAWN])
        hidden = len(layer) - len(kept)
        nodes = [n for n in layer if n in kept]
        edges = [e for e in edges if e[0] in kept and e[1] in kept]
    else:
        nodes = list(layer)  # once each, in order
    rows: dict[int, list[str]] = {}
    for n in nodes:
        rows.setdefault(layer[n], []).append(n)
    pos: dict[str, tuple[float, float]] = {}
    for lx, members in rows.items():
        for j, n in enumerate(members):
            pos[n] = (PAD + lx * (NODE_W + GAP_X), PAD + 18 + j * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(rows) + 1) * (NODE_W + GAP_X) if rows else 200
    height = PAD * 2 + 18 + max((len(m) for m in rows.values()), default=1) * (NODE_H + GAP_Y)
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 30}" '
        f'width="{width}" height="{height + 30}" role="img" aria-label="graph">',
        "<defs>"
        '<marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker>'
        '<marker id="arr-t" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#d9480f"/></marker></defs>',
    ]
    if hidden:
        parts.append(
            f'<text class="notice" x="{PAD}" y="{PAD}" data-testid="graph-notice">'
            f"the graph has {len(layer)} nodes: the first {len(nodes)} are drawn, {hidden} left out</text>"
        )
    # subgraph frames first, so nodes draw over them
    frames: dict[str, list[tuple[float, float]]] = {}
    for n in nodes:
        if ":" in n:
            frames.setdefault(n.split(":")[0], []).append(pos[n])
    for prefix in sorted(frames):
        corners = frames[prefix]
        x1 = min(p[0] for p in corners) - 10
        y1 = min(p[1] for p in corners) - 22
        x2 = max(p[0] for p in corners) + NODE_W + 10
        y2 = max(p[1] for p in corners) + NODE_H + 10
        parts.append(
            f'<g class="subgraph"><rect x="{x1}" y="{y1}" width="{x2 - x1}" height="{y2 - y1}" rx="8"/>'
            f'<text x="{x1 + 8}" y="{y1 + 14}">{escape(prefix)}</text></g>'
        )
    for u, v, *rest in edges:
        if u not in pos or v not in pos:
            continue
        conditional = bool(rest[0]) if rest else False
        taken = (u, v) in path_edges
        cls = "edge" + (" conditional" if conditional else "") + (" taken" if taken else "")
        marker = "url(#arr-t)" if taken else "url(#arr)"
        (ux, uy), (vx, vy) = pos[u], pos[v]
        if u == v:  # a loop: an arc over the node
            d = f"M{ux + NODE_W * 0.35},{uy} C{ux + NODE_W * 0.25},{uy - 30} {ux + NODE_W * 0.75},{uy - 30} {ux + NODE_W * 0.65},{uy}"
        elif vx > ux:
            sx, sy, tx, ty = ux + NODE_W, uy + NODE_H / 2, vx, vy + NODE_H / 2
            mx = (sx + tx) / 2
            d = f"M{sx},{sy} C{mx},{sy} {mx},{ty} {tx},{ty}"
        else:  # backwards or within a layer: bend below
            sx, sy, tx, ty = ux + NODE_W / 2, uy + NODE_H, vx + NODE_W / 2, vy + NODE_H
            low = max(sy, ty) + 40
            d = f"M{sx},{sy} C{sx},{low} {tx},{low} {tx},{ty}"
        parts.append(
            f'<path class="{cls}" data-edge="{escape(u)}->{escape(v)}" d="{d}" fill="none" marker-end="{marker}"/>'
        )
    for n in nodes:
        x, y = pos[n]
        label = n.split(":")[-1]
        cls = "node" + (" end" if label in ENDS else "") + (" taken" if n in path_nodes else "")
        text = {"__start__": "start", "__end__": "end"}.get(label, label)
        parts.append(
            f'<g class="{cls}" data-node="{escape(n)}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="{17 if label in ENDS else 6}"/>'
            f'<text x="{x + NODE_W / 2}" y="{y + NODE_H / 2 + 4}" text-anchor="middle">{escape(text)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
