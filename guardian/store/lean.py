"""What start-up-bound readers use of a store without :mod:`guardian.store.db`'s imports
(``guardian status`` of a store no daemon writes reads it with sqlite3 alone): its size on
disk, and the URI that opens its database read-only."""

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


def sqlite_uri(path: str | os.PathLike[str], query: str) -> str:
    """``file:PATH?QUERY`` for ``sqlite3.connect(..., uri=True)``, with the characters a URI
    reserves (``?``, ``#``, ``%``, spaces ...) %-escaped in the path: unescaped, a store at
    ``/tmp/a?b`` would open ``/tmp/a`` with ``b`` as a parameter."""
    raw = os.fsencode(path)
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-_.~"
    return "file:" + "".join(chr(b) if b in safe else f"%{b:02X}" for b in raw) + "?" + query
