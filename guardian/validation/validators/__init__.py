"""Validators: is a new version of a file still a valid file of its format?

One module per format; each exposes ``VALIDATOR``, an object with ``name`` and
``validate(data, path, options) -> Result``. The watcher, ``guardian validate``, batch writes
and agent hooks all call :func:`run`, which adds what a caller must be able to rely on: a size
limit, a timeout, and no exception ever escaping. Importing this package is cheap: a format's
module (and its parser: yaml, jsonschema, …) is imported the first time it is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardian.validation.validators.base import (
    OptionError,
    Problem,
    Result,
    Validator,
    internal_error,
    out_of_memory,
)

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "Budget", "Problem", "Result", "Validator",
           "budget", "for_path", "get", "names", "register", "run", "unregister"]

MiB = 1024 * 1024
#: Larger files are not validated (a validator holds the whole file, and more, in memory)...
DEFAULT_MAX_BYTES = 20 * MiB
#: ...and for the slow parsers, less: about what the slowest generated input measured (README,
#: Rules) checks in half of DEFAULT_TIMEOUT on one core, well within its memory bound. A rule
#: can raise or lower it: ``options = { python = { max_bytes = "16MiB" } }``.
MAX_BYTES = {"python": 4 * MiB, "ini": 4 * MiB, "schema": 4 * MiB, "yaml": 8 * MiB,
             "toml": 8 * MiB}
#: Seconds a check may take (option ``timeout``); then its verdict is "not validated".
DEFAULT_TIMEOUT = 10.0
#: Memory a check may use in a validator process (:mod:`guardian.validatepool`), per byte of
#: input: 1.5 x the peak measured per input byte on generated files (Python's ``compile``
#: builds ~160 bytes of AST and code per byte of dense source), with a floor. Option
#: ``max_memory`` sets it outright.
MEMORY_PER_BYTE = {"python": 240, "ini": 96, "toml": 48, "schema": 32, "yaml": 24, "json": 16,
                   "markdown": 16, "text": 8}
MEMORY_FLOOR = 256 * MiB
#: Built-in validators run inline (no timeout thread) on inputs up to this size.
INLINE_MAX = 256 * 1024
#: Every verdict that is not one (too large, timed out, over its memory) starts with this.
NOT_VALIDATED = "not validated: "

#: Built-in validator name -> module (json_, yaml_, toml_ so as not to shadow the libraries).
_MODULES = {
    "command": "command",
    "ini": "ini",
    "json": "json_",
    "markdown": "markdown",
    "python": "python",
    "schema": "schema",
    "text": "text",
    "toml": "toml_",
    "yaml": "yaml_",
}

_BY_EXTENSION = {
    ".py": "python", ".pyi": "python",
    ".json": "json",
    ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini", ".cfg": "ini",
    ".md": "markdown", ".markdown": "markdown",
}

_loaded: dict[str, Validator] = {}
_registered: dict[str, Validator] = {}
_lock = threading.Lock()
#: Bumped whenever the set of validators changes (what callers cached about them is stale).
generation = 0


def names() -> list[str]:
    """Every validator name :func:`get` accepts, sorted."""
    return sorted({*_MODULES, *_registered})


def get(name: str) -> Validator:
    """The validator called ``name``; KeyError naming the known ones if there is none."""
    found = _registered.get(name) or _loaded.get(name)
    if found is not None:
        return found
    module = _MODULES.get(name)
    if module is None:
        raise KeyError(f"unknown validator {name!r}; known: {', '.join(names())}")
    with _lock:
        if name not in _loaded:
            mod = importlib.import_module(f"{__name__}.{module}")
            _loaded[name] = mod.VALIDATOR
        return _loaded[name]


def register(validator: Validator) -> None:
    """Add a validator (or replace one by name) for this process.

    A hook for plugins and for tests (a validator that sleeps or raises exercises
    :func:`run`'s timeout and error handling without touching the built-in ones).
    """
    global generation
    _registered[validator.name] = validator
    generation += 1


def unregister(name: str) -> None:
    """Undo :func:`register`; a built-in validator of that name comes back."""
    global generation
    _registered.pop(name, None)
    generation += 1


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of Guardian's own validators, not replaced by :func:`register`
    (so another process running it gets the same answer)."""
    return name in _MODULES and name not in _registered


def for_path(path: str) -> list[str]:
    """The validators that apply to a path by default (what ``"auto"`` means in rules)."""
    ext = os.path.splitext(path)[1].lower()
    return [_BY_EXTENSION.get(ext, "text")]


@dataclass(frozen=True)
class Budget:
    """What one check may cost: its input's size, its wall-clock time (None: no limit) and,
    in a validator process, how much memory it may add."""

    max_bytes: int
    timeout: float | None
    memory: int


def budget(name: str, size: int, options: Mapping[str, Any], *,
           timeout: float | None = DEFAULT_TIMEOUT, max_bytes: int | None = None
           ) -> Budget | Result:
    """The budget of checking ``size`` bytes with ``name``, or the verdict that settles it
    without running: "not validated: too large (…)", or a problem with a budget option.

    ``max_bytes`` (else option ``max_bytes``, else :data:`MAX_BYTES` or 20 MiB) bounds the
    input. Option ``timeout`` replaces the caller's ``timeout`` (the command validator's own
    ``timeout`` is its command's: the wait is at least that plus a second, so the command is
    killed and reported by its validator first). Option ``max_memory`` replaces the memory
    bound sized from the input (:data:`MEMORY_PER_BYTE`, at least :data:`MEMORY_FLOOR`).
    """
    try:
        limit = max_bytes if max_bytes is not None else _size_option(
            options, "max_bytes", MAX_BYTES.get(name, DEFAULT_MAX_BYTES))
        memory = _size_option(options, "max_memory", max(
            MEMORY_FLOOR, MEMORY_PER_BYTE.get(name, MEMORY_PER_BYTE["python"]) * size))
        own = options.get("timeout")
        if own is not None and (not isinstance(own, int | float) or isinstance(own, bool)
                                or not own > 0):
            raise OptionError(f"timeout must be a positive number of seconds, not {own!r}")
    except OptionError as e:
        return Result(name, (Problem(f"invalid option: {e}"),))
    if size > limit:
        return Result(name, skipped=f"{NOT_VALIDATED}too large ({size_text(size)} > "
                                    f"{size_text(limit)} limit)")
    wait = timeout
    if own is not None and wait is not None:
        wait = max(wait, own + 1) if name == "command" else float(own)
    return Budget(limit, wait, memory)


def _size_option(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        from guardian.errors import UsageError
        from guardian.rules.settings import parse_size

        with contextlib.suppress(UsageError):
            return parse_size(value, key)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise OptionError(f"{key} must be a size such as 5MiB or a whole number of bytes, "
                      f"not {value!r}")


def size_text(n: int) -> str:
    """A size as people read it: "13.0 MiB", "512.0 KiB", "37 bytes"."""
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def run(name: str, data: bytes, path: str, options: Mapping[str, Any] | None = None, *,
        timeout: float | None = DEFAULT_TIMEOUT, max_bytes: int | None = None) -> Result:
    """Validate ``data`` (the content of ``path``) with one validator, here; never raises.

    - A file over its size budget (see :func:`budget`) is not validated.
    - The validator runs in a daemon thread; if it has not answered within its time budget
      the result is "not validated: timed out after …s" and the thread is abandoned: Python
      cannot stop it, but it can no longer hold up the caller. ``timeout=None`` runs inline.
      (:mod:`guardian.validatepool` runs costly checks in a process it can kill instead.)
    - An exception, even from a third-party validator, becomes an "internal validator
      error"; running out of memory makes the verdict "not validated" (never "invalid").
    """
    opts: Mapping[str, Any] = options if options is not None else {}
    b = budget(name, len(data), opts, timeout=timeout, max_bytes=max_bytes)
    if isinstance(b, Result):
        return b
    try:
        validator = get(name)
    except KeyError as e:
        return Result(name, (Problem(str(e.args[0])),))
    except Exception as e:  # a broken validator module must not break the caller
        return Result(name, (internal_error(e),))
    wait = b.timeout
    if wait is None or (len(data) <= INLINE_MAX and name in _MODULES and name != "command"):
        # A built-in parser on a small input is bounded work: a thread would cost more than
        # the check (batch writes validate thousands of small files).
        return _call(validator, name, data, path, opts)
    box: list[Result] = []

    def work() -> None:
        try:
            box.append(_call(validator, name, data, path, opts))
        except BaseException as e:  # SystemExit in a thread would otherwise vanish silently
            box.append(Result(name, (internal_error(e),)))

    thread = threading.Thread(target=work, name=f"guardian-validate-{name}", daemon=True)
    thread.start()
    thread.join(wait)
    if not box:
        return Result(name, skipped=f"{NOT_VALIDATED}timed out after {wait:g}s")
    return box[0]


def _call(validator: Validator, name: str, data: bytes, path: str,
          options: Mapping[str, Any]) -> Result:
    try:
        result: object = validator.validate(data, path, options)
    except MemoryError:
        return Result(name, skipped=out_of_memory())
    except Exception as e:
        return Result(name, (internal_error(e),))
    if not isinstance(result, Result):
        return Result(name, (Problem(f"internal validator error: {name} returned "
                                     f"{type(result).__name__}, not a Result"),))
    return result
