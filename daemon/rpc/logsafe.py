"""Client-supplied text on its way into flowd's log: control characters made visible, length cut.

A client name, a method or a parameter can hold a newline (a forged second log line), terminal
escapes (a retitled terminal for whoever tails the log) or a megabyte (a flooded journal). Every
such value goes through `loggable` before it reaches a log call.
"""

from __future__ import annotations

LOG_TEXT_LIMIT = 200
"""Characters of client text one log line shows; the rest is counted, not written."""


def _visible(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == " " or ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def loggable(value: object, limit: int = LOG_TEXT_LIMIT) -> str:
    """`value` as one safe line: non-printable characters (C0/C1 controls, DEL, line and paragraph
    separators, bidi overrides) as \\x../\\u.... escapes, a backslash doubled, at most `limit`
    characters of the original kept."""
    text = value if isinstance(value, str) else str(value)
    shown = "".join(_visible(ch) for ch in text[:limit])
    if len(text) > limit:
        shown += f"... ({len(text) - limit} more characters)"
    return shown
