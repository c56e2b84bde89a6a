"""Templates for ``render`` operations: ``$name`` / ``${name}`` placeholders, ``$$`` for ``$``.

The syntax is ``string.Template``'s, compiled once into literal and placeholder parts and
cached by content, so rendering the same template for many files is a join, not a regex scan
per file (the "template reuse" the batch writer reports as an optimisation).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from guardian.errors import TemplateError

_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)"
                    r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)\}|(?P<invalid>))")


@dataclass(frozen=True)
class Compiled:
    digest: str
    parts: tuple[tuple[bool, str, int], ...]  # (is_placeholder, literal or name, line)

    @property
    def names(self) -> set[str]:
        return {text for is_var, text, _ in self.parts if is_var}

    def render(self, variables: Mapping[str, object], *, limit: int | None = None) -> str:
        """The text with every placeholder replaced; with ``limit``, refused (before it is
        built) when it would be longer than ``limit`` characters: a small template and a
        large value could otherwise ask for any amount of memory."""
        out = []
        size = 0
        for is_var, text, line in self.parts:
            if not is_var:
                piece = text
            elif text not in variables:
                raise TemplateError(f"line {line}: no value for ${text}")
            else:
                piece = str(variables[text])
            size += len(piece)
            if limit is not None and size > limit:
                raise TemplateError(f"the rendered text would be longer than {limit:,} "
                                    "characters")
            out.append(piece)
        return "".join(out)


def compile_template(text: str) -> Compiled:
    """The compiled form of ``text`` (cached: the same template is compiled once)."""
    return _compile(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), text)


@lru_cache(maxsize=256)
def _compile(digest: str, text: str) -> Compiled:
    parts: list[tuple[bool, str, int]] = []
    pos = 0
    line, counted = 1, 0  # lines are counted from the previous token: linear in the text
    for m in _TOKEN.finditer(text):
        line += text.count("\n", counted, m.start())
        counted = m.start()
        if m.start() > pos:
            parts.append((False, text[pos:m.start()], line))
        if m.group("escaped") is not None:
            parts.append((False, "$", line))
        elif m.group("invalid") is not None:
            col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
            raise TemplateError(f"line {line}, column {col}: '$' must start $name, ${{name}} "
                                "or $$")
        else:
            parts.append((True, m.group("named") or m.group("braced"), line))
        pos = m.end()
    if pos < len(text):
        parts.append((False, text[pos:], line + text.count("\n", counted, pos)))
    return Compiled(digest, tuple(parts))


def cache_info() -> tuple[int, int]:
    """(hits, misses) of the compiled-template cache."""
    info = _compile.cache_info()
    return info.hits, info.misses
