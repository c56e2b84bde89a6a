"""How many bytes a store takes on disk, without :mod:`guardian.store.db`'s imports
(``guardian status`` of a store no daemon writes reads it with sqlite3 alone)."""

from __future__ import annotations

import os


def store_size(path: str | os.PathLike[str]) -> int:
    """Bytes of the store's files (an explicit stack: no walk that recurses on depth)."""
    total = 0
    stack = [os.fsencode(path)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total
