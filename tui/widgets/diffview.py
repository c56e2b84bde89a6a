"""How a version looks in the diff pane: a unified or split diff, a preview, or a note.

Pure functions from bytes to Rich renderables (Static shows them); the pane's worker calls
them off the event loop, since a big file's diff takes a while.
"""

from __future__ import annotations

import difflib
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from guardian.store.history import is_binary, unified_diff

#: Past this many bytes a side is described, not diffed (the pane would not keep up).
MAX_DIFF_BYTES = 2_000_000


def counts(old: bytes | None, new: bytes | None) -> tuple[int, int] | None:
    """(+added, -removed) lines from ``old`` to ``new``; None if either side is binary."""
    if any(x is not None and (is_binary(x) or len(x) > MAX_DIFF_BYTES) for x in (old, new)):
        return None
    a = (old or b"").decode().splitlines()
    b = (new or b"").decode().splitlines()
    plus = minus = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            minus += i2 - i1
        if tag in ("replace", "insert"):
            plus += j2 - j1
    return plus, minus


def describe(data: bytes | None, label: str) -> str | None:
    """Why a side is not shown as text (None: it can be)."""
    if data is None:
        return None
    if len(data) > MAX_DIFF_BYTES:
        return f"{label}: {len(data):,} bytes, too large to show here (guardian diff shows it)"
    if is_binary(data):
        import hashlib

        return (f"{label}: binary, {len(data):,} bytes, sha256 "
                f"{hashlib.sha256(data).hexdigest()[:16]}…")
    return None


def unified(old: bytes | None, new: bytes | None, old_label: str, new_label: str,
            theme: str) -> RenderableType:
    notes = [n for n in (describe(old, old_label), describe(new, new_label)) if n]
    if notes:
        return Text("\n".join(notes))
    text = unified_diff(old, new, old_label, new_label)
    if not text:
        return Text("identical", style="dim")
    return Syntax(text, "diff", theme=theme, word_wrap=False, background_color="default")


def split(old: bytes | None, new: bytes | None, old_label: str, new_label: str,
          path: str, theme: str) -> RenderableType:
    """Side by side: the old lines left, the new right, changed rows marked."""
    notes = [n for n in (describe(old, old_label), describe(new, new_label)) if n]
    if notes:
        return Text("\n".join(notes))
    a = (old or b"").decode().splitlines()
    b = (new or b"").decode().splitlines()
    if a == b:
        return Text("identical", style="dim")
    table = Table(expand=True, box=None, show_header=True, pad_edge=False)
    table.add_column(old_label, ratio=1, overflow="fold")
    table.add_column(new_label, ratio=1, overflow="fold")
    styles = {"delete": "red", "insert": "green", "replace": "yellow"}
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(3):
        for tag, i1, i2, j1, j2 in group:
            left, right = a[i1:i2], b[j1:j2]
            style = styles.get(tag, "")
            for k in range(max(len(left), len(right))):
                table.add_row(Text(f"{i1 + k + 1:>4} {left[k]}" if k < len(left) else "",
                                   style=style if tag != "insert" else ""),
                              Text(f"{j1 + k + 1:>4} {right[k]}" if k < len(right) else "",
                                   style=style if tag != "delete" else ""))
        table.add_row(Text("⋯", style="dim"), Text("⋯", style="dim"))
    return table


def preview(data: bytes | None, label: str, path: str, theme: str) -> RenderableType:
    """The whole content of one version, highlighted by its file name."""
    if data is None:
        return Text(f"{label}: no content (a deletion, or kept as metadata only)", style="dim")
    note = describe(data, label)
    if note:
        return Text(note)
    text = data.decode()
    lexer: Any = Syntax.guess_lexer(path, text)
    return Group(Text(label, style="bold"),
                 Syntax(text, lexer, theme=theme, line_numbers=True,
                        background_color="default"))
