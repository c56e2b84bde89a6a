"""``Closing``: what every resource holder of Guardian (the store, a root's directory fds, a
control connection, the writer) needs for ``with``: leaving the block closes it."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: this is on every command's start-up path
if TYPE_CHECKING:
    from typing import Self


class Closing:
    """A mixin: ``with x:`` returns ``x`` and calls ``x.close()`` at the end, however the
    block ends (the subclass defines ``close``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
