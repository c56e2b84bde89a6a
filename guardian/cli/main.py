"""``guardian``'s entry point: parse (a fast path for ``snapshot``), run, map errors to
one line and an exit code.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    if command == "watch":  # first: a SIGINT/SIGTERM from now on is recorded, then honoured
        from guardian import startsignals

        startsignals.install()
    if len(words) == 2 and words[0] == "hook" and words[1] in ("claude", "gemini", "codex"):
        from guardian.agents.hook import run  # an agent's tool call: fail-open
        from guardian.exiting import exit_now

        exit_now(run(words[1]))
    if words == ["--version"]:  # no parser to build for it
        from guardian import __version__

        sys.stdout.write(f"guardian {__version__}\n")
        return 0
    from guardian.cli import quick  # status, snapshot: parsed and run without argparse

    if (done := quick.run(words)) is not None:
        return done
    # Imported here, not above: `--version` and the quick paths above need none of them.
    from guardian.cli.parser import COMMANDS, build_parser, command_parser

    args = quick.snapshot_args(words) or quick.status_args(words)
    if args is None:
        parser = build_parser(command if command in COMMANDS else None)
        args, extra = parser.parse_known_args(words)
        if extra:  # said by the command's parser, so the hint is its own --help
            command_parser(parser, getattr(args, "command", None)).error(
                f"unrecognized arguments: {' '.join(extra)}")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    func = _resolve(args.func)
    one_shot = argv is None and args.command in ONE_SHOT
    if one_shot:
        # The process ends soon and frees everything at once: the collector's passes over
        # a big batch's objects (thousands of targets, each with its bytes) find no cycles
        # worth freeing earlier, and cost tens of milliseconds.
        import gc

        gc.disable()
        args.one_shot = True
    code = _run(func, args)
    if one_shot:
        from guardian.exiting import exit_now

        exit_now(code)  # committed, durable where it had to be, and said: no teardown
    return code


#: Commands that end their process with ``os._exit`` once done and said (see
#: :mod:`guardian.exiting`), when they are the process's own command (not ``main(argv)``
#: called by a program that goes on): the store is left, not closed, and its checkpoint
#: and the replaced files' freeing are handed to a detached process (guardian.batch.io).
ONE_SHOT = frozenset({"apply"})


def _run(func: Command, args: argparse.Namespace) -> int:
    from guardian.errors import GuardianError
    from guardian.exitcodes import ExitCode

    try:
        return int(func(args))
    except GuardianError as e:
        sys.stderr.write(f"guardian {args.command}: error: {e}\n")
        return int(e.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `guardian log | head`: the reader left; that is not an error.
        import contextlib

        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return int(ExitCode.OK)
    except Exception as e:
        if os.environ.get("GUARDIAN_DEBUG"):
            raise
        sys.stderr.write(f"guardian {args.command}: internal error: {type(e).__name__}: {e} "
                         "(set GUARDIAN_DEBUG=1 for a traceback)\n")
        return int(ExitCode.INTERNAL)
    finally:
        if (batchio := sys.modules.get("guardian.batch.io")) is not None:
            batchio.hand_off_releases()  # replaced files are freed after we exit


def _resolve(func: str | Command) -> Command:
    """A command's function from its ``module:function`` name: only that family's module
    is imported (see :mod:`guardian.cli.parser`)."""
    if not isinstance(func, str):
        return func
    module, _, name = func.partition(":")
    found: Command = getattr(__import__(module, fromlist=[name]), name)
    return found
