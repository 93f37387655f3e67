"""The graph layout without Textual: layers, order, boxes, and edges traced through the drawing."""

from __future__ import annotations

import random

from flow.tui.widgets.graph_layout import (
    DOWN,
    LEFT,
    LINE_CHARS,
    RIGHT,
    UP,
    Layout,
    assign_layers,
    label,
    layout,
)

BITS = {char: bit for bit, char in LINE_CHARS.items() if bit not in (UP, DOWN, LEFT, RIGHT)}
BITS.update({"┴": UP | LEFT | RIGHT, "┬": DOWN | LEFT | RIGHT})
STEP = {UP: (0, -1, DOWN), DOWN: (0, 1, UP), LEFT: (-1, 0, RIGHT), RIGHT: (1, 0, LEFT)}


def char(lay: Layout, x: int, y: int) -> str:
    line = lay.lines[y] if 0 <= y < len(lay.lines) else ""
    return line[x] if 0 <= x < len(line) else " "


def reached(lay: Layout, task: str, strict: bool = True) -> set[str]:
    """Tasks whose top '┴' the lines leaving `task`'s bottom '┬' lead to, read as a person would.

    Lines only ever run down or sideways, a '┼' is a crossing (or a turn down), and box borders
    are walls. Not strict, a '┼' may also be a turn sideways (dense drawings share cells).
    """
    node = lay.nodes[task]
    start = (node.center, node.y + 3)
    tops = {(n.center, n.y): n.id for n in lay.nodes.values() if not n.dummy}
    walls = {(x, y) for n in lay.nodes.values() if not n.dummy
             for x in range(n.x, n.x + n.width) for y in range(n.y, n.y + 3)}
    seen, todo, found = {start}, [(start, UP)], set()
    if char(lay, node.center, node.y + 2) != "┬":
        return set()
    while todo:
        (x, y), came = todo.pop()
        c = char(lay, x, y)
        if (x, y) in tops and c == "┴":
            found.add(tops[(x, y)])
            continue
        bits = BITS.get(c, 0)
        if not bits & came or (x, y) in walls:
            continue
        if c == "┼" and strict:  # a crossing (straight through), or where a track turns down into a busy column
            bits = came | {UP: DOWN, DOWN: UP, LEFT: RIGHT, RIGHT: LEFT}[came] | DOWN
        for bit, (dx, dy, back) in STEP.items():
            if bits & bit and bit not in (came, UP) and (x + dx, y + dy) not in seen:
                seen.add((x + dx, y + dy))
                todo.append(((x + dx, y + dy), back))
    return found


def check_drawing(lay: Layout, ups: dict[str, list[str]]) -> None:
    """Boxes inside the canvas and apart; each label in its box; each edge goes down."""
    for task, parents in ups.items():
        node = lay.nodes[task]
        assert 0 <= node.x and node.x + node.width <= lay.width and node.y + 3 <= lay.height
        assert lay.lines[node.y + 1][node.x:].startswith(f"│? {label(task)}")
        for parent in parents:
            assert lay.nodes[parent].layer < node.layer
    for row in lay.layers:
        boxes = sorted((lay.nodes[n].x, lay.nodes[n].x + lay.nodes[n].width) for n in row)
        for (_, end), (start, _) in zip(boxes, boxes[1:], strict=False):
            assert end < start, f"boxes overlap in a layer: {boxes}"


def test_layers_are_longest_paths_from_the_roots():
    ups = {"a": [], "b": ["a"], "c": ["b", "a"], "d": []}
    assert assign_layers(list(ups), ups) == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_unknown_and_self_references_are_ignored_not_trusted():
    lay = layout(["a", "b"], {"a": ["ghost", "a"], "b": ["a", "a"]})
    assert lay.upstream == {"a": [], "b": ["a"]}
    assert reached(lay, "a") == {"b"}
    assert layout([], {}).lines == [] and layout([], {}).height == 0


def test_every_edge_is_drawn_from_the_upstream_box_to_the_downstream_box():
    ups = {"extract": [], "transform": ["extract"], "audit": ["extract"], "load": ["transform", "extract"],
           "report": ["load", "audit"]}
    lay = layout(list(ups), ups)
    check_drawing(lay, ups)
    for task in ups:
        assert reached(lay, task) == {d for d, p in ups.items() if task in p}, task


def test_a_long_edge_goes_around_through_a_dummy_not_through_a_box():
    ups = {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]}
    lay = layout(list(ups), ups)
    dummies = [n for n in lay.nodes.values() if n.dummy]
    assert sorted(n.layer for n in dummies) == [1, 2]
    for node in dummies:
        assert {char(lay, node.x, y) for y in range(node.y, node.y + 3)} <= {"│", "┼", "├", "┤"}
    assert reached(lay, "a") == {"b", "d"}
    check_drawing(lay, ups)


def test_barycenter_ordering_removes_an_avoidable_crossing():
    ups = {"a": [], "b": [], "c": ["b"], "d": ["a"]}
    lay = layout(list(ups), ups)
    assert lay.layers[1] == ["d", "c"]
    assert reached(lay, "a") == {"d"} and reached(lay, "b") == {"c"}


def test_long_ids_are_cut_with_an_ellipsis():
    task = "a_task_id_that_is_far_too_long_for_a_box"
    lay = layout([task], {task: []})
    assert "a_task_id_tha…" in lay.lines[1] and task not in lay.lines[1]


def test_a_200_task_dag_lays_out_with_every_edge_downward_and_no_box_overlapping():
    rng = random.Random(7)
    order = [f"task_{i:03d}" for i in range(200)]
    ups = {t: sorted({order[rng.randrange(i)] for _ in range(rng.randint(0, 3))}) if i else []
           for i, t in enumerate(order)}
    lay = layout(order, ups)
    check_drawing(lay, ups)
    assert len([n for n in lay.nodes.values() if not n.dummy]) == 200
    for task in rng.sample(order, 20):
        assert {d for d, p in ups.items() if task in p} <= reached(lay, task, strict=False)
