"""Types shared by every validator, and the helpers that keep their reports consistent.

A validator is a pure function of (bytes, path, options) that never raises: it answers a
:class:`Result` whose problems carry 1-based lines and columns (columns count characters, not
bytes), so the watcher, ``guardian validate``, batch writes and agent hooks can all print the
same ``file:line:col: message`` a user can jump to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

#: Depth beyond which documents are refused: Python's own parsers (json, PyYAML's composer and
#: constructor, tomllib) recurse and fail near the interpreter's recursion limit, so a deeper
#: document could not be loaded by the programs that read it anyway.
MAX_DEPTH = 1000

#: Longest message kept; longer ones (a schema error quoting a big value) are cut with "…".
MAX_MESSAGE = 300

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, at a 1-based line and column when known."""

    message: str
    line: int | None = None
    column: int | None = None
    severity: str = ERROR

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "column": self.column,
                "severity": self.severity}


@dataclass(frozen=True)
class Result:
    """What one validator said about one file: its problems, or why it did not run."""

    validator: str
    problems: tuple[Problem, ...] = ()
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        """True unless a problem is an error (warnings and skips do not make a file invalid)."""
        return not any(p.severity == ERROR for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"validator": self.validator, "ok": self.ok, "skipped": self.skipped,
                "problems": [p.to_json() for p in self.problems]}


class Validator(Protocol):
    """Anything with a name and a ``validate`` that never raises. It may also have a
    ``skip_for_path(path, options) -> str | None``: the reason it would skip any content at
    that path (a binary extension, for the text validator), asked once per rule outcome and
    extension instead of validating each such file."""

    name: str

    def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result: ...


class OptionError(Exception):
    """An option has the wrong type or value; reported as a problem, never raised to callers."""


class Skip(Exception):
    """Raised by a check that decides not to run; becomes ``Result.skipped``."""


class BaseValidator:
    """The shared ``validate``: runs ``check`` and turns every failure into a problem.

    Subclasses set ``name`` and implement ``check``, which may raise :class:`OptionError`,
    :class:`Skip` or ``RecursionError`` (deep input reaching a recursive library) freely.
    """

    name: str = ""

    def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result:
        try:
            return Result(self.name, tuple(self.check(data, path, options)))
        except Skip as e:
            return Result(self.name, skipped=str(e))
        except OptionError as e:
            return Result(self.name, (Problem(f"invalid option: {e}"),))
        except RecursionError:
            return Result(self.name, (Problem("nesting too deep to check"),))
        except MemoryError:
            raise  # not the file's fault: the caller's verdict is "not validated"
        except Exception as e:  # a validator never raises: a bug becomes a problem
            return Result(self.name, (internal_error(e),))

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        raise NotImplementedError


#: Set by a validator process while a check runs under its memory bound: (the resident
#: memory when the check started, the bytes the check may add to its address space).
memory_bound: tuple[int, int] | None = None


def out_of_memory() -> str:
    """The verdict of a check that ran out of memory: never "invalid" (the file is not at
    fault), so it can never make Guardian revert a write."""
    if memory_bound is None:
        return "not validated: out of memory"
    from guardian.validation.validators import size_text

    return f"not validated: over the memory limit ({size_text(memory_bound[1])})"


def memory_exhausted() -> bool:
    """After a MemoryError: was it this process's memory bound? CPython's parser reports its
    own stack guard (absurdly nested code) as a MemoryError too. Under a bound, a peak at
    least half way to the bound since the check started means memory ran out: the parser's
    largest single allocation on an input within its size budget is far smaller than half
    the bound's floor, and its stack guard trips long before the input fills memory. (The
    worker resets the peak before each check; if it cannot, the lifetime peak says "memory",
    the safe answer: not validated, rather than invalid.)"""
    if memory_bound is None:
        return False
    start, allowed = memory_bound
    peak = memory_status("VmHWM")
    return peak is None or peak - start >= allowed // 2


def memory_status(field: str) -> int | None:
    """A memory figure of this process from ``/proc/self/status`` ("VmSize", "VmRSS",
    "VmHWM": the peak resident size), in bytes."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(field.encode() + b":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Start VmHWM afresh (Linux 4.0+): each check's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "wb") as f:
            f.write(b"5")
    except OSError:
        return False
    return True


def internal_error(e: BaseException) -> Problem:
    return Problem(one_line(f"internal validator error: {type(e).__name__}: {e}"))


# ----------------------------------------------------------------------------- messages
def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """Collapse a message to one line of at most ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lower_first(message: str) -> str:
    """Library messages start with a capital ("Invalid value"); ours start lowercase.

    An acronym ("TOML ...", "URL ...") is left alone.
    """
    if len(message) > 1 and message[0].isupper() and not message[1].isupper():
        return message[0].lower() + message[1:]
    return message


# ----------------------------------------------------------------------------- positions
def text_position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of ``text[index]``; lines end at "\\n", columns count chars."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based (line, column) of ``data[offset]``; the column counts UTF-8 characters."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[line_start:offset].decode("utf-8", "replace")
    return data.count(b"\n", 0, offset) + 1, len(prefix) + 1


def decode_problem(data: bytes, e: UnicodeDecodeError, encoding: str = "UTF-8") -> Problem:
    """Where and why ``data`` is not valid in ``encoding`` (e.start is a byte offset)."""
    line, column = byte_position(data, e.start)
    bad = data[e.start:e.end][:4].hex(" ")
    return Problem(f"invalid {encoding}: {e.reason} (byte {bad})", line, column)


def decode_utf8(data: bytes) -> tuple[str | None, Problem | None]:
    """Strictly decode UTF-8 (encoded surrogates are invalid too), or say where it fails."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, decode_problem(data, e)


# ----------------------------------------------------------------------------- options
def opt_bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise OptionError(f"{key} must be true or false, not {value!r}")
    return value


def opt_int(options: Mapping[str, Any], key: str, default: int | None,
            minimum: int = 0) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise OptionError(f"{key} must be a whole number of at least {minimum}, not {value!r}")
    return value


def opt_seconds(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise OptionError(f"{key} must be a positive number of seconds, not {value!r}")
    return float(value)


def opt_choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...],
               default: str) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise OptionError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def max_depth(options: Mapping[str, Any]) -> int:
    """The nesting limit (option ``max_depth``, default :data:`MAX_DEPTH`)."""
    depth = opt_int(options, "max_depth", MAX_DEPTH, minimum=1)
    return MAX_DEPTH if depth is None else depth
