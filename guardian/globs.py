"""Path globs of rule files, compiled to regular expressions.

Semantics (those of ``pathlib``/``glob`` with ``**``, plus editorconfig's braces):
``*`` matches within one path segment, ``?`` one character, ``[abc]``/``[!abc]`` a set,
``{a,b}`` alternatives, ``**`` any number of whole segments (``**/x`` matches ``x`` too, and a
trailing ``/**`` matches everything below). Globs are relative to the rule file's directory;
a leading ``/`` is allowed and means the same thing.
"""

from __future__ import annotations

import re
from functools import lru_cache


class GlobError(ValueError):
    """A glob that cannot be compiled; the message says where and why."""


@lru_cache(maxsize=1024)
def compile_glob(glob: str) -> re.Pattern[str]:
    return re.compile(_translate(glob.lstrip("/")) + r"\Z", re.DOTALL)


def _translate(g: str) -> str:
    if not g:
        raise GlobError("empty glob")
    out: list[str] = []
    i, n = 0, len(g)
    depth = 0  # open braces
    while i < n:
        c = g[i]
        if c == "*":
            if g.startswith("**", i):
                before_ok = i == 0 or g[i - 1] == "/"
                after = g[i + 2: i + 3]
                if before_ok and after == "/":
                    out.append(r"(?:[^/]*/)*")  # zero or more whole segments
                    i += 3
                    continue
                if before_ok and after == "":
                    out.append(r".*")
                    i += 2
                    continue
                raise GlobError(f"'**' must be a whole path segment (at column {i + 1})")
            out.append(r"[^/]*")
        elif c == "?":
            out.append(r"[^/]")
        elif c == "[":
            j = i + 1
            if j < n and g[j] in "!^":
                j += 1
            if j < n and g[j] == "]":
                j += 1
            while j < n and g[j] != "]":
                j += 1
            if j >= n:
                raise GlobError(f"unclosed '[' (at column {i + 1})")
            body = g[i + 1: j]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            out.append(f"[{'^/' if negate else ''}{body}]")
            i = j
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}":
            if depth == 0:
                raise GlobError(f"unmatched '}}' (at column {i + 1})")
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(g[i]))
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise GlobError("unclosed '{'")
    return "".join(out)


def matches(glob: str, relpath: str) -> bool:
    return compile_glob(glob).match(relpath) is not None
