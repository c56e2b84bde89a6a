"""A batch's compression, done on a thread while the checks run, and its hashing.

Every new content is compressed (what the store keeps) and hashed (its object's name), and
every current content is hashed (to see that the store holds it before it is replaced):
about 15 µs a 4 KiB file here, most of the CPU a large batch spends outside the kernel.
The compression is one call of zstd's C backend for all of them, which holds no GIL from
start to end, so it overlaps the checks that come before the journal (writability,
validation, imports, the store's heads). The hashes are taken when the journal step joins
it, in the batch's thread: on the thread, each of a thousand ``sha256`` calls gave the GIL up
and waited to take it back from the checks' Python (the import check ran 40 % slower) and
hid nothing. Nothing it computes is trusted further than before: the journal step waits for
it (:meth:`Ahead.join`) and reads the same fields it used to fill itself.
"""

from __future__ import annotations

import hashlib
import threading
from types import TracebackType

from guardian.batch.target import Target
from guardian.store.codec import compress_many

#: Below this many bytes of content a thread costs more than it hides (start-up ~0.1 ms).
MIN_BYTES = 256 * 1024


def _new(targets: list[Target]) -> list[Target]:
    """The targets whose new content has no object yet (a restore's comes from the store)."""
    return [t for t in targets
            if t.final is not None and t.new_object_id is None and t.packed is None]


def compress(targets: list[Target]) -> None:
    """Compress each target's new content that has no object yet (at most once)."""
    new = _new(targets)
    for t, packed in zip(new, compress_many([t.final or b"" for t in new]), strict=True):
        t.packed = packed


def fill(targets: list[Target]) -> None:
    """Compress and hash each target's new content, hash its current one (each at most once)."""
    compress(targets)
    for t in targets:
        if t.final is not None and t.digest is None and t.new_object_id is None:
            t.digest = hashlib.sha256(t.final).digest()
        if t.current is not None and t.current_digest is None and t.kind in ("file", "link"):
            t.current_digest = hashlib.sha256(t.current).digest()


class Ahead:
    """:func:`compress` every target that changes on a thread (a small batch: none), and
    :func:`fill` the rest in :meth:`join`. A context manager: leaving it, however, waits for
    the thread, so no target is written to after the batch is done with it."""

    def __init__(self, targets: list[Target]) -> None:
        self._targets = [t for t in targets if not t.unchanged]
        self._thread: threading.Thread | None = None
        size = sum(len(t.final or b"") + len(t.current or b"") for t in self._targets)
        if size >= MIN_BYTES:
            self._thread = threading.Thread(target=self._run, name="guardian-digests",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            compress(self._targets)
        except BaseException:  # join fills again, raising in the batch's thread
            return

    def join(self) -> None:
        """Wait for the thread; fill whatever it did not (none ran, or it failed)."""
        self._wait()
        fill(self._targets)

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._wait()
