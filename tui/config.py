"""The console's own settings: `[tui.keys]` in the same flowd.toml the socket comes from, and the theme.

A console that refuses to start over a typo in a key binding would lock an operator out at the
worst moment, so every problem here becomes a warning that names the entry and is shown once
the console is up; the entry is ignored and everything else still applies.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from textual.binding import Binding
from textual.keys import Keys, key_to_character

from flow.tui.client import config_path  # noqa: F401  (one resolution for socket and keys)

MODIFIERS = {"ctrl", "shift", "alt", "meta", "super", "hyper"}
NAMED_KEYS = {k.value for k in Keys} | {"space", "enter", "tab", "backspace", "escape", "delete", "insert"}
THEMES = {"default": "textual-dark", "ansi16": "ansi-dark", "ansi16-light": "ansi-light"}
"""`--theme` names: ansi16 draws with the terminal's own 16 colours (Textual's native-ANSI themes)."""


def read_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The parsed file (empty when absent) and, if it cannot be read, why."""
    try:
        return tomllib.loads(path.read_text()), []
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, [f"cannot read {path}: {exc}; key bindings keep their defaults"]


def valid_key(value: str) -> bool:
    """A key Textual can bind: 'x', 'G', 'ctrl+t', 'f5', 'question_mark', or a comma list of them."""
    parts = [p.strip() for p in value.split(",")]
    if not parts or any(not p for p in parts):
        return False
    for part in parts:
        *mods, base = part.split("+")
        if any(m not in MODIFIERS for m in mods) or not base:
            return False
        if not (len(base) == 1 and base.isprintable() or base in NAMED_KEYS or key_to_character(base)):
            return False
    return True


def binding_ids() -> dict[str, str]:
    """Every binding id the console defines (id -> its default key), found by importing its screens,
    widgets and dialogs, so a screen added later is remappable without touching this module."""
    import flow.tui as package
    from flow.tui import app as app_module

    modules = [app_module]
    for sub in ("screens", "widgets", "dialogs"):
        pkg = importlib.import_module(f"{package.__name__}.{sub}")
        for info in pkgutil.iter_modules(pkg.__path__):
            modules.append(importlib.import_module(f"{pkg.__name__}.{info.name}"))
    ids: dict[str, str] = {}
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            for binding in getattr(cls, "BINDINGS", None) or []:
                if isinstance(binding, Binding) and binding.id:
                    ids.setdefault(binding.id, binding.key)
    return ids


def keymap(data: Mapping[str, Any], path: Path,
           known: Mapping[str, str] | Callable[[], Mapping[str, str]]) -> tuple[dict[str, str], list[str]]:
    """The valid entries of `[tui.keys]` and one warning per entry that is not. `known` may be a
    callable (binding_ids): it imports every screen, so it is only called when there are keys."""
    tui = data.get("tui")
    if tui is None:
        return {}, []
    if not isinstance(tui, dict):
        return {}, [f"{path}: `tui` must be a table ([tui]); ignored"]
    keys = tui.get("keys")
    if keys is None:
        return {}, []
    if not isinstance(keys, dict):
        return {}, [f"{path}: [tui] keys must be a table ([tui.keys]); ignored"]
    good: dict[str, str] = {}
    warnings: list[str] = []
    if callable(known) and keys:
        known = known()
    for binding_id, value in keys.items():
        if binding_id not in known:
            close = sorted(k for k in known if k.split(".")[-1] == binding_id.split(".")[-1])
            hint = f" (did you mean {', '.join(close)}?)" if close else " (the README lists the ids)"
            warnings.append(f"{path}: [tui.keys] unknown binding id {binding_id!r}{hint}; ignored")
        elif not isinstance(value, str) or not valid_key(value):
            warnings.append(f"{path}: [tui.keys] {binding_id} = {value!r} is not a key "
                            "(e.g. \"x\", \"ctrl+t\", \"f5\", \"question_mark\"); ignored")
        else:
            good[binding_id] = value
    return good, warnings


def pick_theme(flag: str | None, env: Mapping[str, str]) -> str:
    """The Textual theme: the flag's, else ansi16 when the terminal says it has only 16 colours."""
    if flag:
        return THEMES[flag]
    term, colorterm = env.get("TERM", ""), env.get("COLORTERM", "").lower()
    if colorterm in ("truecolor", "24bit") or "256" in term or "direct" in term:
        return THEMES["default"]
    if term in ("linux", "vt100", "vt220", "ansi", "cons25", "xterm-16color", "rxvt-16color") \
            or term.endswith("-16color"):
        return THEMES["ansi16"]
    return THEMES["default"]
