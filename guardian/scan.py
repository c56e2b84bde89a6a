"""Walking a tree the way capture needs it: no symlinks followed, ignored paths pruned.

The walk yields ``(relpath, lstat)`` for regular files and symlinks. Directories it cannot list
are reported, so the caller never mistakes "could not look" for "deleted".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from guardian.ignore import IgnoreMatcher
from guardian.paths import SEP


@dataclass
class WalkReport:
    """What a walk could not see, and why."""

    unreadable_dirs: list[tuple[bytes, str]] = field(default_factory=list)
    dirs: int = 0


def walk(
    root: bytes, prefix: bytes, ignore: IgnoreMatcher, report: WalkReport
) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield (relpath, lstat) of files and symlinks under directory ``prefix`` of ``root``."""
    stack = [prefix]
    while stack:
        d = stack.pop()
        path = root + SEP + d if d else root
        try:
            it = os.scandir(path)
        except FileNotFoundError:
            continue  # vanished while we walked: its files are simply gone
        except NotADirectoryError:
            continue
        except OSError as e:
            report.unreadable_dirs.append((d, e.strerror or str(e)))
            continue
        report.dirs += 1
        with it:
            for entry in it:
                name = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if ignore.child_ignored(d, name, is_dir=is_dir):
                    continue
                rel = d + SEP + name if d else name
                if is_dir:
                    stack.append(rel)
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    report.unreadable_dirs.append((rel, e.strerror or str(e)))
                    continue
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    yield rel, st
                # fifos, sockets and devices are not content: skipped


def is_blind(relpath: bytes, blind: list[bytes]) -> bool:
    """Whether ``relpath`` lies in (or is) a path the walk could not look into."""
    return any(relpath == b or relpath.startswith(b + SEP) for b in blind)
