"""TOML: the file must load with ``tomllib``, the parser Python's own tools (pip, build,
pytest, ruff's Python side) use for ``pyproject.toml``.

tomllib reports positions inside its messages ("Invalid value (at line 3, column 5)"); they
are parsed out into the problem's line and column. A UTF-8 byte order mark at the start is
valid TOML (toml-test's ``valid/utf8-bom-*``): the rest is checked, and the mark is a
warning, because tomllib itself rejects it, so pip, build and pytest cannot read such a
``pyproject.toml``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from guardian.validation.validators.base import (
    WARNING,
    BaseValidator,
    Problem,
    decode_utf8,
    lower_first,
    one_line,
    text_position,
)

_BOM = "\ufeff".encode()
_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)")


class TomlValidator(BaseValidator):
    name = "toml"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        problem, _ = load(data)
        problems = [] if problem is None else [problem]
        if data.startswith(_BOM):
            problems.insert(0, Problem("byte order mark at the start of the file (valid TOML, "
                                       "but Python's tomllib rejects it)", 1, 1, WARNING))
        return problems


def load(data: bytes) -> tuple[Problem | None, dict[str, Any] | None]:
    """The document, or the first error in it (tomllib stops at the first).

    A byte order mark at the start is skipped (replaced by a space, so that columns stay).
    """
    text, problem = decode_utf8(data)
    if text is None:
        return problem, None
    if text.startswith("\ufeff"):
        text = " " + text[1:]
    try:
        return None, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return _decode_problem(text, str(e)), None
    except RecursionError:
        return Problem("nesting too deep (arrays or inline tables)"), None
    except ValueError as e:  # an integer over Python's 4300-digit conversion limit
        return Problem(one_line(lower_first(str(e)))), None


def _decode_problem(text: str, message: str) -> Problem:
    m = _AT.search(message)
    if m is None:
        return Problem(one_line(lower_first(message)))
    message = one_line(lower_first(message[: m.start()] + message[m.end():]))
    if m.group(1) is None:  # "at end of document"
        return Problem(message, *text_position(text, len(text)))
    return Problem(message, int(m.group(1)), int(m.group(2)))


VALIDATOR = TomlValidator()
