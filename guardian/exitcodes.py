"""Exit codes of every `guardian` command, in one place (they are part of the API)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: The command ran and found something wrong: corrupt objects, differences, a rejected batch.
    FAILURE = 1
    #: ``guardian health``: running, but something is degraded (same value as FAILURE).
    DEGRADED = 1
    #: Bad usage or bad input: unknown flag, missing path, a store already in use.
    USAGE = 2
    #: ``guardian health``: something Guardian needs is broken (backups, watcher, disk).
    UNHEALTHY = 3
    #: A bug in Guardian; the message says how to get a traceback.
    INTERNAL = 70
    INTERRUPTED = 130
