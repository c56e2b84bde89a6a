"""Markdown: UTF-8, front matter that parses, and no code fence left open.

Markdown itself cannot be invalid (any text renders), but two mistakes are common and
costly: front matter (Jekyll, Hugo, MkDocs, Docusaurus) that no longer parses, which breaks
the site build, and an unclosed code fence, which silently turns the rest of the document
into code. Fences follow CommonMark: an opening fence is at least three backticks or tildes
indented by up to three spaces (a backtick fence's info string has no backtick); it is closed
by a fence of the same character, at least as long, with nothing after it but spaces. Fences
inside block quotes and deeper-indented list items are not followed (their containers close
them), nor are those inside HTML comments.

A file that starts with a ``---`` line is taken to start with YAML front matter (a
thematic break as a document's first line is rare); ``+++`` starts TOML front matter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from guardian.validation.validators.base import (
    BaseValidator,
    Problem,
    decode_utf8,
)

_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_CLOSE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_COMMENT_OPEN = re.compile(r"^ {0,3}<!--")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class MarkdownValidator(BaseValidator):
    """Options are passed on to the front matter's validator (e.g. ``duplicate_keys``)."""

    name = "markdown"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        text, problem = decode_utf8(data)
        if text is None:
            return [problem] if problem else []
        lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
        problems, body_start = _front_matter(lines, options)
        problems.extend(_unclosed_fence(lines, body_start))
        return problems


def _front_matter(lines: list[str], options: Mapping[str, Any]) -> tuple[list[Problem], int]:
    """Problems of the front matter, and the index of the first line after it."""
    opener = lines[0].rstrip() if lines else ""
    if opener == "---":
        closers: tuple[str, ...] = ("---", "...")
        kind = "yaml"
    elif opener == "+++":
        closers, kind = ("+++",), "toml"
    else:
        return [], 0
    for end in range(1, len(lines)):
        if lines[end].rstrip() in closers:
            break
    else:
        return [Problem(f"front matter opened here is never closed (no {closers[0]} line)",
                        1, 1)], len(lines)
    # A blank first line stands for the opening fence, so lines need no shifting (even
    # those quoted inside messages: "while parsing a flow sequence at line 2").
    body = ("\n" + "\n".join(lines[1:end]) + "\n").encode("utf-8")
    if kind == "yaml":
        from guardian.validation.validators import (
            yaml_,  # only documents with front matter pay for it
        )

        found = yaml_.check(body, options)
    else:
        from guardian.validation.validators import toml_

        toml_problem, _ = toml_.load(body)
        found = [] if toml_problem is None else [toml_problem]
    prefix = f"front matter ({kind.upper()}): "
    return [Problem(prefix + p.message, p.line, p.column, p.severity) for p in found], end + 1


def _unclosed_fence(lines: list[str], start: int) -> list[Problem]:
    fence: str | None = None  # the opening fence's characters while inside a code block
    opened = indent = 0
    in_comment = False
    for n in range(start, len(lines)):
        line = lines[n]
        if fence is not None:
            m = _CLOSE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if in_comment:
            in_comment = "-->" not in line
            continue
        if _COMMENT_OPEN.match(line):
            in_comment = "-->" not in line[line.index("<!--") + 4:]
            continue
        m = _OPEN.match(line)
        if m and not (m.group(2)[0] == "`" and "`" in m.group(3)):
            fence, opened, indent = m.group(2), n + 1, len(m.group(1))
    if fence is None:
        return []
    return [Problem(f"code fence {fence} is never closed (the rest of the file is code)",
                    opened, indent + 1)]


VALIDATOR = MarkdownValidator()
