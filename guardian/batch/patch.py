"""Applying unified diffs (the ``patch`` form of an ``edit`` operation), strictly.

Each hunk's context and removed lines must match the file exactly, at the line the hunk
names or, like patch(1), at a nearby offset (the nearest match wins). A hunk that matches
nowhere is an error naming the hunk and the line it expected; nothing is half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guardian.errors import PatchError

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
MAX_OFFSET = 200


@dataclass
class Hunk:
    number: int
    old_start: int
    old: list[str]
    new: list[str]


def parse(patch: str) -> list[Hunk]:
    hunks: list[Hunk] = []
    lines = patch.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = _HUNK.match(lines[i])
        if not m:
            i += 1  # headers (---, +++, diff, index) and anything before the first hunk
            continue
        old_len = int(m.group(2)) if m.group(2) is not None else 1
        new_len = int(m.group(4)) if m.group(4) is not None else 1
        hunk = Hunk(len(hunks) + 1, int(m.group(1)), [], [])
        i += 1
        last = ""
        while i < len(lines):
            line = lines[i]
            if line.startswith("\\"):  # "\ No newline at end of file": the line before has none
                _chop(hunk, last)
                i += 1
                continue
            if len(hunk.old) >= old_len and len(hunk.new) >= new_len:
                break
            tag = line[:1]
            if tag == " " or line in ("\n", "\r\n"):
                body = line[1:] if tag == " " else line
                hunk.old.append(body)
                hunk.new.append(body)
            elif tag == "-":
                hunk.old.append(line[1:])
            elif tag == "+":
                hunk.new.append(line[1:])
            else:
                raise PatchError(f"hunk {hunk.number}: unexpected line {line.rstrip()!r}")
            last = tag if tag in "+-" else " "
            i += 1
        if len(hunk.old) != old_len or len(hunk.new) != new_len:
            raise PatchError(f"hunk {hunk.number}: truncated (expected {old_len} old and "
                             f"{new_len} new lines)")
        hunks.append(hunk)
    if not hunks:
        raise PatchError("no hunks (@@ -a,b +c,d @@) in the patch")
    return hunks


def _chop(hunk: Hunk, last: str) -> None:
    for side, tags in ((hunk.old, " -"), (hunk.new, " +")):
        if last in tags and side:
            side[-1] = side[-1].removesuffix("\n").removesuffix("\r")


def apply(text: str, patch: str) -> str:
    """``text`` with every hunk of ``patch`` applied, or PatchError."""
    lines = text.splitlines(keepends=True)
    shift = 0
    for hunk in parse(patch):
        want = max(hunk.old_start - 1, 0) + shift if hunk.old else hunk.old_start + shift
        at = _find(lines, hunk.old, want)
        if at is None:
            raise PatchError(f"hunk {hunk.number} does not apply: its lines are not at line "
                             f"{hunk.old_start} (nor within {MAX_OFFSET} lines of it)")
        lines[at:at + len(hunk.old)] = hunk.new
        shift += len(hunk.new) - len(hunk.old)
    return "".join(lines)


def _find(lines: list[str], old: list[str], want: int) -> int | None:
    n = len(old)
    for offset in range(MAX_OFFSET + 1):
        for at in (want - offset, want + offset) if offset else (want,):
            if 0 <= at <= len(lines) - n and lines[at:at + n] == old:
                return at
    return None
