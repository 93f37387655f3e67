"""Untrusted text made safe to show on a terminal: control characters drawn, never obeyed.

A DAG's owner, tags and description, an import error, an XCom value or a task's log line come
from people and programs flowd does not vouch for. Sent raw, an ESC starts a sequence the
terminal obeys (an OSC 2 retitles it, others move the cursor, rewrite what is already on screen
or, on some terminals, answer back into the input). Both the CLI (when stdout is a terminal)
and the console pass such text through `visible` so the operator sees `^[]2;...` instead.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0, DEL, C1, and the line/paragraph separators and bidirectional overrides that reorder or
break what follows them (a forged line or a reversed file name reads as something it is not)."""


def _shown(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return "^" + chr(code + 0x40)  # caret notation, as `cat -v` and less: ESC is ^[
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def visible(text: str, keep: str = "") -> str:
    """`text` with every control character replaced by a visible form (`\\x1b` -> `^[`), except
    those in `keep` (e.g. "\\n\\t" for a block of lines shown as lines)."""
    if not _CONTROLS.search(text):
        return text
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else _shown(m.group()), text)
