"""Where each task of a DAG goes on a character canvas, and the canvas itself. Pure: no Textual.

A layered (Sugiyama-style) drawing read top to bottom: longest-path layers so every edge points
down, dummy nodes where an edge skips layers so it can be routed around the boxes it passes, two
barycenter sweeps to cut crossings, then edges drawn on horizontal tracks in the gaps between
layers. Lines are recorded as connection bits per cell and turned into box-drawing characters at
the end, so junctions and crossings come out right wherever edges meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

BOX_HEIGHT = 3
MAX_LABEL = 14
"""Task ids longer than this are cut with an ellipsis; the footer shows the whole id."""
SPACING = 2
UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8
LINE_CHARS = {
    UP: "│", DOWN: "│", UP | DOWN: "│", LEFT: "─", RIGHT: "─", LEFT | RIGHT: "─",
    DOWN | RIGHT: "┌", DOWN | LEFT: "┐", UP | RIGHT: "└", UP | LEFT: "┘",
    UP | DOWN | RIGHT: "├", UP | DOWN | LEFT: "┤", DOWN | LEFT | RIGHT: "┬", UP | LEFT | RIGHT: "┴",
    UP | DOWN | LEFT | RIGHT: "┼",
}


@dataclass
class Node:
    """A box (a task) or a dummy (one layer of a long edge), at (x, y) on the canvas."""

    id: str
    layer: int
    dummy: bool = False
    x: int = 0
    y: int = 0
    width: int = 1

    @property
    def center(self) -> int:
        return self.x + self.width // 2


@dataclass
class Layout:
    nodes: dict[str, Node]
    layers: list[list[str]]
    """Node ids per layer, left to right, dummies included."""
    upstream: dict[str, list[str]]
    downstream: dict[str, list[str]]
    width: int = 0
    height: int = 0
    lines: list[str] = field(default_factory=list)
    """The drawing without colour; `boxes` says which cells belong to which task."""

    def tasks_in_layer(self, layer: int) -> list[str]:
        return [n for n in self.layers[layer] if not self.nodes[n].dummy]


def label(task_id: str) -> str:
    return task_id if len(task_id) <= MAX_LABEL else task_id[: MAX_LABEL - 1] + "…"


def box_width(task_id: str) -> int:
    """Border, glyph, space, label, space, border."""
    return len(label(task_id)) + 5


def assign_layers(order: Sequence[str], upstream: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Longest path from the roots, so an edge always goes at least one layer down.

    `order` must be topological (the protocol's serialized tasks are); unknown upstream ids are
    ignored rather than trusted, so a half-written reply cannot hang or crash the drawing.
    """
    layer: dict[str, int] = {}
    for task in order:
        ups = [layer[u] for u in upstream.get(task, ()) if u in layer]
        layer[task] = max(ups) + 1 if ups else 0
    return layer


def _barycenter(ids: list[str], neighbours: Mapping[str, list[str]], pos: Mapping[str, int]) -> list[str]:
    """Sort a layer by the mean position of each node's neighbours in the fixed layer (stable)."""
    def key(item: tuple[int, str]) -> float:
        index, node = item
        near = [pos[n] for n in neighbours.get(node, ()) if n in pos]
        return sum(near) / len(near) if near else float(index)
    return [node for _, node in sorted(enumerate(ids), key=key)]


def layout(order: Sequence[str], upstream: Mapping[str, Iterable[str]], sweeps: int = 2) -> Layout:
    """Lay out tasks (in topological `order`) with their `upstream` ids and draw the canvas."""
    known = set(order)
    ups = {t: list(dict.fromkeys(u for u in upstream.get(t, ()) if u in known and u != t)) for t in order}
    layer_of = assign_layers(order, ups)
    nodes = {t: Node(t, layer_of[t], width=box_width(t)) for t in order}
    up_n: dict[str, list[str]] = {t: [] for t in order}
    down_n: dict[str, list[str]] = {t: [] for t in order}
    for task in order:
        for src in ups[task]:
            prev = src
            for mid in range(layer_of[src] + 1, layer_of[task]):
                dummy = f"\0{src}\0{task}\0{mid}"
                nodes[dummy] = Node(dummy, mid, dummy=True)
                up_n[dummy], down_n[dummy] = [prev], []
                down_n[prev].append(dummy)
                prev = dummy
            down_n[prev].append(task)
            up_n[task].append(prev)
    depth = max(layer_of.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for node in nodes.values():
        layers[node.layer].append(node.id)
    for _ in range(sweeps):
        for i in range(1, depth):
            pos = {n: k for k, n in enumerate(layers[i - 1])}
            layers[i] = _barycenter(layers[i], up_n, pos)
        for i in range(depth - 2, -1, -1):
            pos = {n: k for k, n in enumerate(layers[i + 1])}
            layers[i] = _barycenter(layers[i], down_n, pos)
    result = Layout(nodes, layers, {t: list(ups[t]) for t in order},
                    {t: [d for d in order if t in ups[d]] for t in order})
    _place(result, up_n)
    _draw(result, down_n)
    return result


def _place(lay: Layout, up_n: Mapping[str, list[str]]) -> None:
    """x: each node as close as the order allows to the mean centre of its upstream nodes."""
    for ids in lay.layers:
        cursor = 0
        for node_id in ids:
            node = lay.nodes[node_id]
            near = [lay.nodes[u].center for u in up_n.get(node_id, ())]
            want = round(sum(near) / len(near)) - node.width // 2 if near else cursor
            node.x = max(cursor, want)
            cursor = node.x + node.width + SPACING
    lay.width = max((n.x + n.width for n in lay.nodes.values()), default=0)


def _tracks(spans: list[tuple[int, int, str]]) -> dict[str, int]:
    """Greedy interval colouring: spans that overlap horizontally get different track rows."""
    ends: list[int] = []
    track: dict[str, int] = {}
    for lo, hi, key in sorted(spans):
        for i, end in enumerate(ends):
            if end < lo - 1:
                ends[i] = hi
                track[key] = i
                break
        else:
            track[key] = len(ends)
            ends.append(hi)
    return track


def _draw(lay: Layout, down_n: Mapping[str, list[str]]) -> None:
    bits: dict[tuple[int, int], int] = {}

    def link(x: int, y: int, bit: int) -> None:
        bits[(x, y)] = bits.get((x, y), 0) | bit

    def vline(x: int, y0: int, y1: int) -> None:
        for y in range(y0, y1 + 1):
            link(x, y, (UP if y > y0 else 0) | (DOWN if y < y1 else 0))

    y = 0
    plans = []
    for index, ids in enumerate(lay.layers):
        for node_id in ids:
            lay.nodes[node_id].y = y
        spans = []
        for node_id in ids:
            node = lay.nodes[node_id]
            xs = [node.center] + [lay.nodes[d].center for d in down_n.get(node_id, ())]
            if down_n.get(node_id) and min(xs) != max(xs):
                spans.append((min(xs), max(xs), node_id))
        tracks = _tracks(spans) if index + 1 < len(lay.layers) else {}
        gap = (max(tracks.values()) + 1 if tracks else 0) + 1
        plans.append((y, tracks))
        y += BOX_HEIGHT + gap
    lay.height = y - gap if lay.layers else 0
    for (top, tracks), ids in zip(plans, lay.layers, strict=True):
        bottom = top + BOX_HEIGHT - 1
        for node_id in ids:
            node = lay.nodes[node_id]
            if node.dummy:
                vline(node.x, top, bottom)
            for child in down_n.get(node_id, ()):
                target = lay.nodes[child]
                if node_id in tracks:
                    row = bottom + 1 + tracks[node_id]
                    vline(node.center, bottom, row)
                    lo, hi = sorted((node.center, target.center))
                    for x in range(lo, hi + 1):
                        link(x, row, (LEFT if x > lo else 0) | (RIGHT if x < hi else 0))
                    vline(target.center, row, target.y)
                else:
                    vline(node.center, bottom, target.y)
    canvas = [[" "] * lay.width for _ in range(lay.height)]
    for (x, y), bit in bits.items():
        if 0 <= y < lay.height and 0 <= x < lay.width:
            canvas[y][x] = LINE_CHARS.get(bit, "│")
    for node in lay.nodes.values():
        if node.dummy:
            continue
        x, y, w = node.x, node.y, node.width
        top = ["┌", *("─" * (w - 2)), "┐"]
        bottom = ["└", *("─" * (w - 2)), "┘"]
        if bits.get((node.center, y), 0) & UP:
            top[w // 2] = "┴"
        if bits.get((node.center, y + 2), 0) & DOWN:
            bottom[w // 2] = "┬"
        middle = f"│? {label(node.id)} │"
        canvas[y][x:x + w] = top
        canvas[y + 1][x:x + w] = list(middle.ljust(w - 1)[: w - 1] + "│")
        canvas[y + 2][x:x + w] = bottom
    lay.lines = ["".join(row).rstrip() for row in canvas]


def glyph_column(node: Node) -> int:
    """Where a box's state glyph sits (the `?` placeholder in `lines`)."""
    return node.x + 1
