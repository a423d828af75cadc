"""Offline drawings of a topology: a text listing, Mermaid text, and a PNG (OpenCV, no network).

All three are read off LangGraph's own `get_graph(xray=True)` (subgraphs expanded, conditional
edges from the routers' path maps), plus the graph builder for which function each node runs and
which router decides each conditional edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from gar_agent.graph_layout import layers
from gar_agent.topology import Topology

START_END = ("__start__", "__end__")


@dataclass
class Drawing:
    """Nodes and edges of a compiled topology, with what runs where."""

    nodes: list[str]
    """Node ids; a subgraph's nodes are `subgraph:node`."""
    edges: list[tuple[str, str, bool, str | None]]
    """(source, target, conditional, label): label is the router's answer when renamed by a path map."""
    runs: dict[str, str]
    """Node id -> the function it runs, or "subgraph"."""
    routers: dict[str, str]
    """Node id -> the router(s) deciding its conditional edges."""
    mermaid: str


def _describe(builder: StateGraph, prefix: str, runs: dict[str, str], routers: dict[str, str]) -> None:
    for name, spec in builder.nodes.items():
        runnable = spec.runnable
        if isinstance(runnable, CompiledStateGraph):
            runs[prefix + name] = "subgraph"
            _describe(runnable.builder, f"{prefix}{name}:", runs, routers)
            continue
        func = getattr(runnable, "func", None) or runnable
        module = getattr(func, "__module__", "") or ""
        # Graph files are imported under a generated module name: say where the function lives.
        where = "the graph file" if module.startswith("gar_graph_") else module
        runs[prefix + name] = f"{getattr(func, '__qualname__', type(func).__name__)} ({where})"
    for source, branches in builder.branches.items():
        routers[prefix + source] = ", ".join(branches)


def describe(topology: Topology) -> Drawing:
    """Read a topology's nodes, edges, node functions and routers."""
    graph = topology.compile().get_graph(xray=True)
    runs: dict[str, str] = {}
    routers: dict[str, str] = {}
    _describe(topology.builder, "", runs, routers)
    edges = [(e.source, e.target, e.conditional, None if e.data is None else str(e.data)) for e in graph.edges]
    return Drawing(list(graph.nodes), edges, runs, routers, graph.draw_mermaid())


def _group(node: str) -> str:
    return node.rsplit(":", 1)[0] if ":" in node else ""


def _local(node: str) -> str:
    return node.rsplit(":", 1)[-1]


def text(drawing: Drawing, title: str) -> str:
    """A readable listing: nodes with what they run, then edges per (sub)graph, conditional marked."""
    lines = [
        title,
        "  -->  always      -.->  conditional [router, or router: its answer when renamed]",
        "",
        "nodes",
    ]
    width = max((len(n) for n in drawing.nodes), default=0) + 4
    listed: set[str] = set()
    for node in drawing.nodes:
        # xray replaces a subgraph node by its members: name the subgraph once, above them.
        parts = node.split(":")
        for depth in range(1, len(parts)):
            group = ":".join(parts[:depth])
            if group not in listed:
                listed.add(group)
                lines.append(f"  {'  ' * (depth - 1)}{group:<{width - 2 * (depth - 1)}}subgraph")
        if parts[-1] not in START_END:
            lines.append(
                f"  {'  ' * (len(parts) - 1)}{node:<{width - 2 * (len(parts) - 1)}}{drawing.runs.get(node, '')}"
            )
    groups: dict[str, list[tuple[str, str, bool, str | None]]] = {}
    for edge in drawing.edges:
        # An edge belongs to the subgraph holding both ends; edges into or out of it to the parent.
        inner = _group(edge[0]) if _group(edge[0]) == _group(edge[1]) else ""
        groups.setdefault(inner, []).append(edge)
    for group in sorted(groups, key=lambda g: (g.count(":"), g)):
        lines += ["", f"edges in subgraph {group}" if group else "edges"]
        show = _local if group else str
        pairs = [(f"{show(s)} {'-.->' if c else '-->'} {show(t)}", s, c, label) for s, t, c, label in groups[group]]
        col = max(len(p[0]) for p in pairs) + 3
        for arrow, source, conditional, label in pairs:
            note = ""
            if conditional:
                router = drawing.routers.get(source, "router")
                note = f"[{router}: {label!r}]" if label else f"[{router}]"
            lines.append(f"  {arrow:<{col}}{note}".rstrip())
    return "\n".join(lines)


# --- PNG -----------------------------------------------------------------------------------------

FONT = cv2.FONT_HERSHEY_SIMPLEX
SCALE = 0.55
INK, MUTED, FILL, TERMINAL, FRAME = (
    (40, 40, 40),
    (120, 120, 120),
    (255, 240, 242),
    (225, 225, 225),
    (245, 235, 225),
)
ROW, GAP, PAD = 90, 40, 14


def _inside(p, rect) -> bool:
    x1, y1, x2, y2 = rect
    return x1 <= p[0] <= x2 and y1 <= p[1] <= y2


def _draw_path(img, pts: np.ndarray, dashed: bool) -> None:
    """A polyline with an arrowhead at its end; dashed means 7 px on, 5 px off along its length."""
    pts = np.asarray(pts, float)
    at = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    if dashed:  # resample every 2 px so the dash pattern follows the length, whatever the input spacing
        steps = np.append(np.arange(0.0, at[-1], 2.0), at[-1])
        pts = np.stack([np.interp(steps, at, pts[:, 0]), np.interp(steps, at, pts[:, 1])], axis=1)
        at = steps
    for (a, b), start in zip(pairwise(pts), at):
        if not dashed or start % 12 < 7:
            cv2.line(img, tuple(round(v) for v in a), tuple(round(v) for v in b), INK, 1, cv2.LINE_AA)
    tip = pts[-1]
    d = tip - pts[-2]
    d /= np.hypot(*d) or 1.0
    n = np.array([-d[1], d[0]])
    head = np.array([tip, tip - 10 * d + 5 * n, tip - 10 * d - 5 * n]).round().astype(np.int32)
    cv2.fillPoly(img, [head], INK, cv2.LINE_AA)


def png(drawing: Drawing, title: str, path: str | Path) -> Path:
    """Draw the topology top to bottom (layered), subgraphs framed, conditional edges dashed."""
    layer = layers(drawing.nodes, [(s, t) for s, t, _, _ in drawing.edges])
    rows: dict[int, list[str]] = {}
    for n in drawing.nodes:
        rows.setdefault(layer[n], []).append(n)
    size = {n: cv2.getTextSize(_local(n), FONT, SCALE, 1)[0] for n in drawing.nodes}
    box_w = {n: size[n][0] + 2 * PAD for n in drawing.nodes}
    box_h = max(s[1] for s in size.values()) + 2 * PAD
    row_w = {r: sum(box_w[n] for n in ns) + GAP * (len(ns) - 1) for r, ns in rows.items()}
    width = max(max(row_w.values()) + 320, cv2.getTextSize(title, FONT, 0.6, 1)[0][0] + 60)
    top = 70
    rect: dict[str, tuple[int, int, int, int]] = {}
    for r, ns in rows.items():
        x = (width - row_w[r]) // 2
        for n in ns:
            y = top + r * ROW
            rect[n] = (x, y, x + box_w[n], y + box_h)
            x += box_w[n] + GAP
    height = top + (max(rows) + 1) * ROW + 30
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(img, title, (20, 32), FONT, 0.6, INK, 1, cv2.LINE_AA)
    cv2.putText(img, "solid: always   dashed: conditional", (20, 54), FONT, 0.45, MUTED, 1, cv2.LINE_AA)

    frames: dict[str, tuple[int, int, int, int]] = {}
    for group in sorted({_group(n) for n in drawing.nodes if _group(n)}, key=lambda g: g.count(":")):
        members = [rect[n] for n in drawing.nodes if n.startswith(group + ":")]
        m = 16 + 8 * (max(n.count(":") for n in drawing.nodes) - 1 - group.count(":"))  # outer frames wider
        x1, y1 = min(r[0] for r in members) - m, min(r[1] for r in members) - m - 10
        x2, y2 = max(r[2] for r in members) + m + 60, max(r[3] for r in members) + m
        caption = f"subgraph {group}"  # top right, clear of the edges that come in at the top centre
        lw = cv2.getTextSize(caption, FONT, 0.45, 1)[0][0]
        x2 = max(x2, width // 2 + lw + 24)  # rows are centred on the canvas
        frames[group] = (x1, y1, x2, y2)
        cv2.rectangle(img, (x1, y1), (x2, y2), FRAME, -1)
        cv2.rectangle(img, (x1, y1), (x2, y2), MUTED, 1, cv2.LINE_AA)
        cv2.putText(img, caption, (x2 - lw - 6, y1 + 16), FONT, 0.45, MUTED, 1, cv2.LINE_AA)

    def clearance(s: str, t: str, x: float, y0: float, y1: float, side: int) -> float:
        """How far aside an edge must bend to pass the nodes and foreign frames between its ends."""
        lo, hi = min(y0, y1), max(y0, y1)
        around = [rect[n] for n in drawing.nodes if n not in (s, t)]
        around += [f for g, f in frames.items() if not (s.startswith(g + ":") or t.startswith(g + ":"))]
        reach = [(r[2] - x) if side > 0 else (x - r[0]) for r in around if r[1] < hi and r[3] > lo]
        return max([0.0, *reach])

    bends: dict[str, int] = {}
    lanes: dict[int, int] = {}
    entering: dict[str, int] = {}
    for s, t, conditional, label in drawing.edges:
        a, b = rect[s], rect[t]
        if s == t:  # a loop: an arc on the side the routed edges do not use
            side = -1 if _group(s) else 1
            cx, cy = (a[2] if side > 0 else a[0]), (a[1] + a[3]) // 2
            arc = [(cx + side * 22 * np.cos(th), cy + 14 * np.sin(th)) for th in np.linspace(-2.3, 2.3, 30)]
            _draw_path(img, np.array(arc[::-1] if side > 0 else arc), conditional)
            continue
        p0 = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
        p1 = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        if layer[t] == layer[s] + 1:  # straight: from the bottom of one box to the top of the next
            curve = np.linspace((p0[0], a[3]), (p1[0], b[1]), 40)
        else:
            # Edges that jump layers (or go back up) go around what lies between, out of one box's
            # side and into the other's: top-level ones on the left, a subgraph's on the right.
            side = 1 if _group(s) else -1
            lanes[side] = lanes.get(side, 0) + 1  # each routed edge its own lane
            bends[s] = bends.get(s, 0) + 1
            entering[t] = entering.get(t, 0) + 1
            y_out = p0[1] + 4 * (bends[s] - 1)
            y_in = p1[1] - 4 * (entering[t] - 1)
            mid = (p0[0] + p1[0]) / 2
            lane_x = mid + side * (clearance(s, t, mid, y_out, y_in, side) + 12 * lanes[side])
            ends = (a[2], b[2]) if side > 0 else (a[0], b[0])
            corners = [(ends[0], y_out), (lane_x, y_out), (lane_x, y_in), (ends[1], y_in)]
            curve = np.concatenate([np.linspace(u, v, 30) for u, v in pairwise(corners)])
        _draw_path(img, curve, conditional)
        if label:
            mx, my = curve[len(curve) // 2]
            cv2.putText(img, label, (int(mx) + 6, int(my)), FONT, 0.42, MUTED, 1, cv2.LINE_AA)

    for n in drawing.nodes:
        x1, y1, x2, y2 = rect[n]
        terminal = _local(n) in START_END
        cv2.rectangle(img, (x1, y1), (x2, y2), TERMINAL if terminal else FILL, -1)
        cv2.rectangle(img, (x1, y1), (x2, y2), MUTED if terminal else INK, 1, cv2.LINE_AA)
        cv2.putText(img, _local(n), (x1 + PAD, y1 + PAD + size[n][1]), FONT, SCALE, INK, 1, cv2.LINE_AA)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
    return path
