"""JSON: strict RFC 8259, stricter than ``json.loads``.

``json.loads`` accepts things other parsers reject or silently mangle: NaN and Infinity,
unpaired surrogate escapes ("\\ud800" cannot be encoded back to UTF-8): these are errors
here. Duplicate keys are valid JSON (RFC 8259 says names SHOULD be unique; JSONTestSuite's
``y_object_duplicated_key*`` must parse) but most readers keep only the last value, so they
are a warning by default and an error in the strict preset (option ``duplicate_keys``).
The fast path is the C parser with hooks that only notice trouble; when there is any, an
iterative scanner (no recursion, any depth) walks the text once more to say exactly where.

Judgement calls: a UTF-8 byte order mark is an error, not a warning (RFC 8259 §8.1:
implementations "MUST NOT add a byte order mark"; Go, Rust's serde_json, ``JSON.parse`` and
``json.loads`` of a decoded str reject it). An empty or whitespace-only file is an error
("empty document"): it is not a JSON text. Very large integers are valid JSON (Python just
cannot turn them into ``int`` past 4300 digits by default). Deeper nesting than ``max_depth``
(default 1000) is an error: Python's parser cannot load it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from guardian.validation import json_fast
from guardian.validation.validators.base import (
    ERROR,
    MAX_DEPTH,
    WARNING,
    BaseValidator,
    Problem,
    decode_utf8,
    lower_first,
    max_depth,
    opt_choice,
    text_position,
)

_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?Infinity|NaN|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")
_CONSTANTS = ("NaN", "Infinity", "-Infinity")
_LONE = re.compile("[\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)
_POSITION = re.compile(r": line \d+ column \d+ \(char \d+\)$")


class JsonValidator(BaseValidator):
    """Options: ``duplicate_keys`` = "warning" (default) | "error" | "allow";
    ``max_depth`` (default 1000)."""

    name = "json"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        duplicates = opt_choice(options, "duplicate_keys", ("error", "warning", "allow"),
                                "warning")
        depth_limit = max_depth(options)
        text, problem = decode_utf8(data)
        if text is None:
            return [problem] if problem else []
        problems: list[Problem] = []
        if text.startswith("\ufeff"):
            problems.append(Problem("byte order mark at the start of the file "
                                    "(RFC 8259 forbids it)", 1, 1))
            text = " " + text[1:]  # same length: every later column stays right
        if not text.strip(" \t\n\r"):
            return [*problems, Problem("empty document", 1, 1)]
        error, suspect = check_syntax(text, depth_limit)
        if error is not None:
            return [*problems, error]
        if suspect or depth_limit < MAX_DEPTH:
            problems.extend(strict_problems(text, duplicates, depth_limit))
        return problems


def check_syntax(text: str, depth_limit: int = MAX_DEPTH) -> tuple[Problem | None, bool]:
    """The syntax error ``json.loads`` finds, located, or None and whether the fast pass saw
    something :func:`strict_problems` must locate (duplicates, NaN, surrogate escapes)."""
    try:
        suspect = json_fast.first_pass(text)
    except json.JSONDecodeError as e:
        message = _POSITION.sub("", e.msg).removesuffix(" at")
        return Problem(lower_first(message), e.lineno, e.colno), False
    except RecursionError:
        return _too_deep(text, depth_limit), False
    return None, suspect


def strict_problems(text: str, duplicates: str = "error",
                    depth_limit: int = MAX_DEPTH) -> list[Problem]:
    """What RFC 8259 forbids and ``json.loads`` accepts, located, in a text it accepts."""
    problems: list[Problem] = []
    keys_stack: list[dict[str, int]] = []  # per open container: keys seen (objects)
    for kind, pos, value in scan(text):
        if kind == "open":
            keys_stack.append({})
            if len(keys_stack) > depth_limit:
                return [*problems, _too_deep(text, depth_limit)]
        elif kind == "close":
            keys_stack.pop()
        elif kind == "key":
            keys = keys_stack[-1]
            if value in keys and duplicates != "allow":
                line, _ = text_position(text, keys[value])
                problems.append(Problem(f"duplicate key {value!r} (first at line {line})",
                                        *text_position(text, pos),
                                        ERROR if duplicates == "error" else WARNING))
            keys.setdefault(value, pos)
        elif kind == "constant":
            problems.append(Problem(f"{value} is not valid JSON (RFC 8259 has no NaN or "
                                    f"Infinity)", *text_position(text, pos)))
        if kind in ("key", "string") and _LONE.search(value):
            offset = _lone_surrogate_offset(text, pos)
            problems.append(Problem("unpaired surrogate escape in a string (not valid "
                                    "Unicode)", *text_position(text, offset)))
    return problems


def _lone_surrogate_offset(text: str, start: int) -> int:
    """Offset of the first unpaired \\uD800-\\uDFFF escape in the string at ``start``."""
    pending: int | None = None  # a high surrogate escape waiting for its low half
    pos = start + 1
    while True:
        m = _ESCAPE.search(text, pos)
        if m is None or m.start() > text.find('"', pos):
            return start if pending is None else pending
        code = int(m.group(1), 16) if m.group(1) else -1
        if pending is not None:
            if m.start() == pos and 0xDC00 <= code <= 0xDFFF:
                pending = None
                pos = m.end()
                continue
            return pending
        if 0xDC00 <= code <= 0xDFFF:
            return m.start()
        if 0xD800 <= code <= 0xDBFF:
            pending = m.start()
        pos = m.end()


def _too_deep(text: str, limit: int) -> Problem:
    """Where nesting first goes past ``limit``; if it never does (the parser ran out of stack
    below it, called from deep inside something else), where it is deepest."""
    depth = deepest = where = 0
    try:
        for kind, pos, _ in scan(text):
            if kind == "open":
                depth += 1
                if depth > deepest:
                    deepest, where = depth, pos
                if depth > limit:
                    return Problem(f"nesting too deep (over {limit} levels)",
                                   *text_position(text, pos))
            elif kind == "close":
                depth -= 1
    except (ValueError, IndexError):  # a syntax error after the deep part: stop there
        pass
    return Problem(f"nesting too deep ({deepest} levels)", *text_position(text, where))


def scan(text: str) -> Iterator[tuple[str, int, Any]]:
    """Tokens of a JSON text as (kind, offset, value), iteratively: any depth is fine.

    Kinds: "open" ("{" or "["), "close", "key" (decoded), "string" (decoded), "constant"
    (NaN, Infinity, -Infinity), "scalar" (a number, true, false, null; its source text).
    It trusts the text to be JSON (``json.loads`` said so) and stops with ValueError
    where it is not.
    """
    scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]
    in_object: list[bool] = []
    expect_key = False
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    end = len(text)
    while pos < end:
        c = text[pos]
        if c == '"':
            value, after = scanstring(text, pos + 1, True)
            yield ("key" if expect_key else "string"), pos, value
            expect_key = False
            pos = after
        elif c in "{[":
            yield "open", pos, c
            in_object.append(c == "{")
            expect_key = c == "{"
            pos += 1
        elif c in "}]":
            yield "close", pos, c
            in_object.pop()
            expect_key = False
            pos += 1
        elif c == ",":
            expect_key = bool(in_object and in_object[-1])
            pos += 1
        elif c == ":":
            pos += 1
        else:
            m = _SCALAR.match(text, pos)
            if m is None:
                raise ValueError(f"unexpected character at {pos}")
            token = m.group()
            yield ("constant" if token in _CONSTANTS else "scalar"), pos, token
            pos = m.end()
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]


def locate(text: str, pointers: Iterable[tuple[str | int, ...]]) -> dict[tuple[Any, ...],
                                                                       tuple[int, int]]:
    """(line, column) of the values at these paths (a path is a tuple of keys and indexes).

    Used to point a schema error at the offending value.
    """
    wanted = set(pointers)
    if not wanted:
        return {}
    found: dict[tuple[Any, ...], tuple[int, int]] = {}
    path: list[Any] = []
    frames: list[list[Any]] = []  # per container: [is_object, next index or current key]
    for kind, pos, value in scan(text):
        if kind == "key":
            frames[-1][1] = value
            continue
        if kind == "close":
            frames.pop()
            if path:
                path.pop()
            continue
        if frames:  # a value inside a container: its path is the container's plus one step
            frame = frames[-1]
            step = frame[1]
            if not frame[0]:
                frame[1] += 1
            here = (*path, step)
        else:
            here = ()
        if here in wanted and here not in found:
            found[here] = text_position(text, pos)
            if len(found) == len(wanted):
                break
        if kind == "open":
            frames.append([value == "{", 0 if value == "[" else None])
            if len(frames) > 1:
                path.append(here[-1])
    return found


VALIDATOR = JsonValidator()
