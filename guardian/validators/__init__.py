"""Validators: is a new version of a file still a valid file of its format?

One module per format; each exposes ``VALIDATOR``, an object with ``name`` and
``validate(data, path, options) -> Result``. The watcher, ``guardian validate``, batch writes
and agent hooks all call :func:`run`, which adds what a caller must be able to rely on: a size
limit, a timeout, and no exception ever escaping. Importing this package is cheap: a format's
module (and its parser: yaml, jsonschema, …) is imported the first time it is asked for.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from guardian.validators.base import (
    Problem,
    Result,
    Validator,
    internal_error,
)

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "Problem", "Result", "Validator", "for_path",
           "get", "names", "register", "run", "unregister"]

#: Larger files are not validated (a validator holds the whole file, and more, in memory).
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0
#: Built-in validators run inline (no timeout thread) on inputs up to this size.
INLINE_MAX = 256 * 1024

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


def run(name: str, data: bytes, path: str, options: Mapping[str, Any] | None = None, *,
        timeout: float | None = DEFAULT_TIMEOUT, max_bytes: int | None = None) -> Result:
    """Validate ``data`` (the content of ``path``) with one validator; never raises.

    - Files over ``max_bytes`` (default: option ``max_bytes``, else 20 MiB) are skipped.
    - The validator runs in a daemon thread; if it has not answered after ``timeout`` seconds
      the result is skipped ("timed out after …s") and the thread is abandoned: Python cannot
      stop it, but it can no longer hold up the caller. ``timeout=None`` runs inline. When the
      options carry a ``timeout`` of their own (the command validator's), the wait is at least
      that plus a second, so the command is killed and reported by its validator first.
    - An exception, even from a third-party validator, becomes an "internal validator error".
    """
    opts: Mapping[str, Any] = options if options is not None else {}
    limit = max_bytes if max_bytes is not None else opts.get("max_bytes", DEFAULT_MAX_BYTES)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        return Result(name, (Problem(f"invalid option: max_bytes must be a whole number of "
                                     f"bytes, not {limit!r}"),))
    if len(data) > limit:
        return Result(name, skipped=f"{len(data)} bytes is over the validator size limit")
    try:
        validator = get(name)
    except KeyError as e:
        return Result(name, (Problem(str(e.args[0])),))
    except Exception as e:  # a broken validator module must not break the caller
        return Result(name, (internal_error(e),))
    if timeout is None or (len(data) <= INLINE_MAX and name in _MODULES and name != "command"):
        # A built-in parser on a small input is bounded work: a thread would cost more than
        # the check (batch writes validate thousands of small files).
        return _call(validator, name, data, path, opts)
    wait = timeout
    own = opts.get("timeout")
    if isinstance(own, int | float) and not isinstance(own, bool) and own + 1 > wait:
        wait = own + 1
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
        return Result(name, skipped=f"timed out after {wait:g}s")
    return box[0]


def _call(validator: Validator, name: str, data: bytes, path: str,
          options: Mapping[str, Any]) -> Result:
    try:
        result: object = validator.validate(data, path, options)
    except Exception as e:
        return Result(name, (internal_error(e),))
    if not isinstance(result, Result):
        return Result(name, (Problem(f"internal validator error: {name} returned "
                                     f"{type(result).__name__}, not a Result"),))
    return result
