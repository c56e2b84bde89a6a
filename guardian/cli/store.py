"""``guardian store …``: operations on a store as a whole (today: ``backup``, the code of
which is :mod:`guardian.store.backup`); :mod:`guardian.cli.parser` builds their parsers with
:func:`add_parsers`."""

from __future__ import annotations

import sys

from guardian.cli.parser import add_options, opt
from guardian.exitcodes import ExitCode
from guardian.locations import STORE_ENV

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from typing import Any

BACKUP_HELP = """\
Copy the store to DEST consistently while a daemon may be writing it: the database through
SQLite's online backup API (one snapshot), then every loose object that snapshot names.
DEST must be absent or an empty directory outside the store and the watched roots; it is
made private (0700) and is a store only once complete (a failed backup removes what it
wrote). Check it with `guardian verify --store DEST`; ship it off-host with restic, borg or
rsync. Exit 0 done, 1 the source lacks objects its database names (listed; the copy is
made anyway), 2 usage.
"""


def add_parsers(sub: Any, only: str | None) -> None:
    """``store`` and its subcommands, built only when ``only`` is None or ``"store"``."""
    import argparse

    p = sub.add_parser("store", help="operate on a whole store: backup",
                       description="Operations on a store as a whole.")
    if only not in (None, "store"):
        return
    actions = p.add_subparsers(dest="store_command", metavar="ACTION",
                               parser_class=type(p))
    actions.required = True
    b = actions.add_parser("backup", help="a consistent copy of a live store",
                           description=BACKUP_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(b, [
        opt("dest", metavar="DEST", help="a new or empty directory"), "json",
        opt("--store", metavar="DIR", help=f"the store to copy (default: ${STORE_ENV}, else "
            "the store whose roots contain the current directory)")])
    b.set_defaults(func="guardian.cli.store:cmd_store_backup")


def cmd_store_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from guardian.cli.common import find_store, print_json
    from guardian.progress import Progress
    from guardian.store.backup import backup

    bars = {"database": Progress("database"), "objects": Progress("objects")}
    open_bars = dict(bars)

    def progress(phase: str, done: int, total: int) -> None:
        bars[phase](done, total)
        if done >= total and open_bars.pop(phase, None) is not None:
            bars[phase].close()

    try:
        result = backup(find_store(args, None), Path(args.dest), progress)
    finally:
        for bar in open_bars.values():
            bar.close()
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write(
            f"backed up {result.source} to {result.dest}: {result.versions:,} versions, "
            f"{result.objects:,} objects ({result.loose_objects:,} loose, "
            f"{result.loose_bytes:,} bytes), database {result.database_bytes:,} bytes, "
            f"in {result.elapsed_s:.2f}s\n")
        if result.missing:
            sys.stdout.write(f"the source lacks {len(result.missing)} loose objects its "
                             "database names (run guardian verify on it):\n")
            for h in result.missing:
                sys.stdout.write(f"  {h}\n")
    return ExitCode.OK if result.ok else ExitCode.FAILURE
