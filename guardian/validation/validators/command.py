"""Command: any external checker (ruff, mypy, shellcheck, a project script) as a validator.

The command is an argv list, run without a shell. It checks the content being validated —
the new bytes of a batch write, the version the watcher just stored — never whatever is on
disk at that moment (which, before a write, is the *old* content, and for a new file
nothing). So "{path}" in any argument is replaced by a private copy of that content: a file
with the target's own name in a fresh 0700 temporary directory, not a file beside the
target. A file beside it would appear in the watched tree (every other watcher — editors,
test runners, build tools — would see it; it needs write access there; a crash would leave it
behind) and could not have the target's exact name (tools that go by name, such as a
``Dockerfile`` or ``pyproject.toml`` checker, would not recognise it). The command still runs
in the real file's directory, and the copy's path is written back as the real one in what
it prints. A tool that finds its configuration from the file's own location (ruff, eslint,
prettier, black) should be given the content on stdin instead, with ``stdin = true``: then
"{path}" is the real path (``ruff check --stdin-filename {path} -``).

Exit status 0 means valid. Otherwise each output line of the common ``file:line[:col]:
message`` form that names this file becomes a problem at that line and column (at most
:data:`MAX_PROBLEMS`), and so does the rustc style of ruff's default output (the message,
then ``--> file:line:col``). If no line has either form, the first lines of the output make
one problem. This validator does not decide whether a command may run (rules decide which
rule files are trusted); it runs what it is given.

Output goes to a temporary file, not a pipe, and so does the stdin content: a command that
fills a pipe, never reads its input, or leaves a child holding a pipe open cannot block the
validator. On timeout the command's whole process group is killed."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from guardian.validation.validators.base import (
    BaseValidator,
    OptionError,
    Problem,
    one_line,
    opt_bool,
    opt_seconds,
)

MAX_PROBLEMS = 50
MAX_OUTPUT_LINES = 20
MAX_OUTPUT_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 10.0

# Possessive quantifiers throughout: no part can give back what it matched, so a line is
# matched in one pass whatever it holds (the output is the checked file's echo: untrusted).
_LOCATED = re.compile(r"^(?P<file>[^:\n]++):(?P<line>\d{1,18}+):(?:(?P<col>\d{1,18}+):)?+"
                      r"\s*+(?P<msg>.*+)$")
#: rustc-style diagnostics (ruff's default "full" output): the message, then "--> file:l:c".
_ARROW = re.compile(r"^\s*+-->\s*+(?P<file>[^:\n]++):(?P<line>\d{1,18}+)(?::(?P<col>\d{1,18}+))?+"
                    r"\s*+$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class CommandValidator(BaseValidator):
    """Options: ``command`` (argv list, or a string split like a shell would, without one),
    ``timeout`` (seconds, default 10), ``cwd`` (default: the file's directory), ``stdin``
    (true: the content on standard input and "{path}" the real path; default false: "{path}"
    a private copy of the content)."""

    name = "command"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        command = _command(options)
        timeout = opt_seconds(options, "timeout", DEFAULT_TIMEOUT)
        on_stdin = opt_bool(options, "stdin", False)
        cwd = options.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise OptionError(f"cwd must be a directory path, not {cwd!r}")
        if cwd is None:
            parent = os.path.dirname(os.path.abspath(path))
            cwd = parent if os.path.isdir(parent) else None
        elif not os.path.isdir(cwd):
            return [Problem(f"command directory does not exist: {cwd}")]
        with contextlib.ExitStack() as stack:
            if on_stdin:
                checked = path
                stdin: Any = stack.enter_context(tempfile.TemporaryFile())
                stdin.write(data)
                stdin.seek(0)
            else:
                checked = _private_copy(stack, data, path)
                stdin = subprocess.DEVNULL
            argv = [arg.replace("{path}", checked) for arg in command]
            out = stack.enter_context(tempfile.TemporaryFile())
            try:
                proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=cwd, start_new_session=True)
            except FileNotFoundError:
                return [Problem(f"command not found: {argv[0]}")]
            except PermissionError:
                return [Problem(f"command is not executable: {argv[0]}")]
            except OSError as e:
                return [Problem(one_line(f"cannot run {argv[0]}: {e.strerror or e}"))]
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return [Problem(f"command timed out after {timeout:g}s")]
            finally:
                if proc.returncode is None:  # interrupted while waiting: leave nothing behind
                    _kill_group(proc)
            if status == 0:
                return []
            out.seek(0)
            output = out.read(MAX_OUTPUT_BYTES).decode("utf-8", "replace")
            if checked != path:
                output = output.replace(checked, path)  # the copy's name means the file
            # Parsed while the copy exists: a name for it the command printed differently
            # (relative to cwd, through a symlinked /tmp) is still recognised as this file.
            return _problems(output, status, (path, checked), cwd)
        raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _private_copy(stack: contextlib.ExitStack, data: bytes, path: str) -> str:
    """``data`` as a file with ``path``'s own name in a new private temporary directory
    (removed when ``stack`` closes, with whatever the command left there)."""
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="guardian-check-",
                                                          ignore_cleanup_errors=True))
    copy = os.path.join(tmp, os.path.basename(path) or "content")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return copy


def _command(options: Mapping[str, Any]) -> list[str]:
    command = options.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if (not isinstance(command, list | tuple) or not command
            or not all(isinstance(a, str) for a in command)):
        raise OptionError(f"command must be a non-empty list of strings, not {command!r}")
    return list(command)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _problems(output: str, status: int, names: tuple[str, ...],
              cwd: str | None) -> list[Problem]:
    """The problems in a failed command's output; ``names[0]`` is the file's real path, the
    others other names of the same content (the private copy)."""
    lines = [line.rstrip() for line in _ANSI.sub("", output).splitlines()]
    lines = [line for line in lines if line.strip()]
    problems = []
    targets = [os.path.abspath(n) for n in dict.fromkeys(names)]
    previous = ""
    for line in lines:
        m = _ARROW.match(line)
        message = previous
        if m is None:
            m = _LOCATED.match(line)
            message = m.group("msg") if m else ""
        previous = line.strip()
        if m is None:
            continue
        if any(_same_file(m.group("file"), target, cwd) for target in targets):
            col = m.group("col")
            problems.append(Problem(one_line(message), int(m.group("line")),
                                    int(col) if col else None))
        else:  # about another file (an import it follows): keep where, in the message
            problems.append(Problem(one_line(f"{m.group('file')}:{m.group('line')}: {message}")))
        if len(problems) == MAX_PROBLEMS:
            break
    if problems:
        return problems
    if status < 0:
        try:
            why = f"command was killed by {signal.Signals(-status).name}"
        except ValueError:
            why = f"command was killed by signal {-status}"
    else:
        why = f"command exited with status {status}"
    if not lines:
        return [Problem(f"{why} and printed nothing")]
    return [Problem(one_line(f"{why}: " + " | ".join(lines[:MAX_OUTPUT_LINES]), 2000))]


def _same_file(name: str, target: str, cwd: str | None) -> bool:
    candidate = os.path.normpath(os.path.join(cwd or os.getcwd(), name.strip()))
    if candidate == os.path.normpath(target):
        return True
    try:
        return os.path.samefile(candidate, target)
    except (OSError, ValueError):
        return False


VALIDATOR = CommandValidator()
