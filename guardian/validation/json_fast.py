"""The JSON validator's first pass (guardian.validation.validators.json_), importable alone.

The validator package loads the validator machinery (dataclasses, inspect: ~8 ms); the agent
hook's lean path only needs to know that a small JSON text is clean, which this pass says:
the C parser with hooks that only notice trouble (duplicate keys, NaN and Infinity,
surrogate escapes), which the validator then locates.
"""

from __future__ import annotations

import json
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: A \\uD800-\\uDFFF escape: only then can a string hold an unpaired surrogate.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class _Trouble:
    """Hooks for the C parser that build nothing and only notice what needs locating."""

    def __init__(self) -> None:
        self.found = False

    def pairs(self, pairs: list[tuple[str, Any]]) -> None:
        if not self.found and len({k for k, _ in pairs}) != len(pairs):
            self.found = True

    def constant(self, name: str) -> None:
        self.found = True


def first_pass(text: str) -> bool:
    """Parse ``text`` (raising json.JSONDecodeError or RecursionError as ``json.loads``);
    whether it holds something the strict pass must locate."""
    trouble = _Trouble()
    try:
        json.loads(text, object_pairs_hook=trouble.pairs, parse_constant=trouble.constant)
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer over Python's digit limit: valid JSON all the same
        json.loads(text, object_pairs_hook=trouble.pairs, parse_constant=trouble.constant,
                   parse_int=len)
    return trouble.found or SURROGATE_ESCAPE.search(text) is not None


def clean(data: bytes) -> bool:
    """Whether the json validator with its default options finds no problem at all in
    ``data`` (UTF-8, no byte order mark, not empty, parsed, nothing to locate)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if text.startswith("\ufeff") or not text.strip(" \t\n\r"):
        return False
    try:
        return not first_pass(text)
    except (ValueError, RecursionError):
        return False
