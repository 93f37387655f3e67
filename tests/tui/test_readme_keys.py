"""The README's table of remappable binding ids names every id the console has."""

from __future__ import annotations

import re
from pathlib import Path

from flow.tui.config import binding_ids

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> set[str]:
    text = README.read_text()
    table = text[text.index("Ids are `screen.action`"):text.index("An unknown id")]
    ids = set()
    for row in table.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or not cells[1].strip().startswith("`"):
            continue
        for screen in re.findall(r"`([a-z_]+)`", cells[1]):
            ids |= {f"{screen}.{action}" for action in re.findall(r"`([a-z_]+)`", cells[2])}
    return ids


def test_every_binding_id_is_in_the_readme():
    missing = sorted(set(binding_ids()) - documented())
    assert not missing, f"binding ids missing from the README's [tui.keys] table: {missing}"
