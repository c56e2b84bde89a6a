"""Python: the file must compile, and its relative imports must be able to resolve.

``compile`` on the raw bytes is exactly what the interpreter does on import: it honours the
PEP 263 coding declaration and a UTF-8 BOM, and catches compile-time errors a parser alone
accepts ("'return' outside function", "nonlocal declaration not allowed at module level").
Compile-time warnings (an invalid escape sequence, ``is`` with a literal) are reported as
warnings. Beyond syntax, one kind of import error is visible without running anything: a
relative import in a file that is not inside a package (its directory has no
``__init__.py``), or one that climbs above its top-level package (more levels than
consecutive package directories above the file).

Namespace packages (PEP 420) have no ``__init__.py``, so a directory without one is only
judged "not a package" when no directory above it is a package either: below a regular
package, a directory without ``__init__.py`` is a namespace portion (the standard library's
own tests import such modules), and how deep it sits cannot be known from the disk.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import threading
import tokenize
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from guardian.validation.validators.base import (
    WARNING,
    BaseValidator,
    Problem,
    byte_position,
    decode_problem,
    lower_first,
    memory_exhausted,
    one_line,
    opt_bool,
)

#: Prefilter: only files that may contain a relative import are parsed into an AST.
_RELATIVE = re.compile(rb"\bfrom[\s\\]*\.")
_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

#: ``warnings.catch_warnings`` swaps process-wide state; concurrent compiles take turns.
_warnings_lock = threading.Lock()


class PythonValidator(BaseValidator):
    """Options: ``check_imports`` (default true) turns the relative-import checks off, e.g.
    for namespace packages (PEP 420), whose directories have no ``__init__.py``."""

    name = "python"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        check_imports = opt_bool(options, "check_imports", True)
        problems: list[Problem] = []
        error = self._compile(data, path, problems)
        if error is not None:
            return [error, *problems]
        if check_imports and _RELATIVE.search(data):
            problems.extend(_relative_imports(data, path))
        return problems

    def _compile(self, data: bytes, path: str, warned: list[Problem]) -> Problem | None:
        with _warnings_lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                compile(data, path, "exec", dont_inherit=True)
                error = None
            except (SyntaxError, ValueError) as e:
                error = _syntax_problem(data, e)
            except MemoryError:  # the parser's own stack guard on absurdly nested code...
                if memory_exhausted():  # ...or the validator process's memory bound
                    raise
                error = Problem("code too deeply nested to compile")
            except RecursionError:
                error = Problem("code too deeply nested to compile "
                                "(maximum recursion depth exceeded)")
        for w in caught:
            if w.filename == path and issubclass(w.category, SyntaxWarning | DeprecationWarning):
                warned.append(Problem(one_line(lower_first(str(w.message))), w.lineno or None,
                                      severity=WARNING))
            else:  # another thread's warning, caught while we held the filters: pass it on
                with contextlib.suppress(Warning):  # (turned into an error: not ours to raise)
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return error


def _syntax_problem(data: bytes, e: SyntaxError | ValueError) -> Problem:
    """The error as a user should see it, with a location even where CPython gives none."""
    msg = e.msg if isinstance(e, SyntaxError) else str(e)
    if "null byte" in msg:
        nul = data.find(b"\0")
        line, column = byte_position(data, nul) if nul >= 0 else (None, None)
        return Problem("source code cannot contain null bytes", line, column)
    if not isinstance(e, SyntaxError):
        return Problem(one_line(lower_first(msg)))
    if msg.startswith("(unicode error)"):
        located = _decode_error(data)
        if located is not None:
            return located
    line = e.lineno if e.lineno and e.lineno > 0 else None
    if line is None and ("encoding" in msg):  # "unknown encoding: x": CPython says line 0
        line = _cookie_line(data)
    column = e.offset if line is not None and e.offset and e.offset > 0 else None
    if column is not None and line is not None and e.text is not None:
        # Past the end of the line (unexpected EOF): point just after its last character.
        column = min(column, len(e.text.rstrip("\r\n")) + 1)
    return Problem(one_line(lower_first(msg)), line, column)


def _decode_error(data: bytes) -> Problem | None:
    """Where the bytes stop being valid in the file's declared (or default) encoding."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except (SyntaxError, LookupError):  # e.g. the first line itself is not UTF-8
        encoding = "utf-8"
    try:
        data.decode(encoding)
    except UnicodeDecodeError as e:
        return decode_problem(data, e, "UTF-8" if encoding.startswith("utf-8") else encoding)
    except LookupError:
        return None
    return None


def _cookie_line(data: bytes) -> int | None:
    for n, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines()[:2], 1):
        if _COOKIE.match(line):
            return n
    return None


# ----------------------------------------------------------------------------- imports
def _relative_imports(data: bytes, path: str) -> list[Problem]:
    tree = compile(data, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    if not relative:
        return []
    depth = package_depth(path)
    if depth == 0 and _inside_regular_package(path):
        return []  # a namespace package (PEP 420) inside a package: its depth is unknowable
    lines: list[str] | None = None
    problems = []
    for node in sorted(relative, key=lambda n: (n.lineno, n.col_offset)):
        if depth == 0:
            message = "relative import outside a package (no __init__.py beside this file)"
        elif node.level > depth:
            message = (f"relative import beyond the top-level package ({node.level} levels up "
                       f"from a package {depth} deep)")
        else:
            continue
        if lines is None:
            lines = _source_lines(data)
        problems.append(Problem(message, node.lineno, _column(lines, node)))
    return problems


def package_depth(path: str) -> int:
    """How many package levels hold ``path``: consecutive parents with an ``__init__.py``.

    ``pkg/sub/mod.py`` with both ``__init__.py`` files is 2 deep (``from .. import x`` is
    ``pkg``). A file named ``__init__.py`` makes its own directory a package even before it
    is on disk. The path is taken as Python's import system would find it (not resolved
    through symlinks).
    """
    directory = os.path.dirname(os.path.abspath(path))
    first = os.path.basename(path) == "__init__.py"
    depth = 0
    while True:
        if not (first or os.path.isfile(os.path.join(directory, "__init__.py"))):
            return depth
        first = False
        depth += 1
        parent = os.path.dirname(directory)
        if parent == directory:
            return depth
        directory = parent


def _inside_regular_package(path: str) -> bool:
    """Whether a directory above the file's (which has no ``__init__.py``) is a package."""
    directory = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    while True:
        if os.path.isfile(os.path.join(directory, "__init__.py")):
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


def _source_lines(data: bytes) -> list[str]:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        text = data.decode("utf-8", "replace")
    return _LINE_BREAK.split(text.removeprefix("\ufeff"))


def _column(lines: list[str], node: ast.ImportFrom) -> int:
    """AST columns are UTF-8 byte offsets; users count characters."""
    if node.lineno > len(lines):
        return node.col_offset + 1
    prefix = lines[node.lineno - 1].encode("utf-8")[: node.col_offset]
    return len(prefix.decode("utf-8", "replace")) + 1


VALIDATOR = PythonValidator()
