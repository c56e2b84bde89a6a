"""``exit_now``: end a one-shot process at once, once everything it had to do is done.

A hook or ``guardian apply`` has written its reply and committed what it had to keep; the
interpreter's teardown (every module imported, every object of a 16 MB manifest freed one
by one) would only make the caller wait longer. Exit handlers (the validation workers')
still run; buffered output is flushed first.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this is on the hook's start-up path
if TYPE_CHECKING:
    from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib is not on the hook's path
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    os._exit(code)
