"""Guardian: keeps every version of every watched file, so no write can lose data.

Importing this package is cheap on purpose: agent hooks start a process per tool call. The
public names (``Batch``, ``BatchError``) load their modules when first used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Batch", "BatchError", "__version__"]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    from guardian.api import Batch
    from guardian.errors import BatchError


def __getattr__(name: str) -> object:
    """``guardian.Batch`` and ``guardian.BatchError``, imported on first use (PEP 562)."""
    if name == "Batch":
        from guardian.api import Batch

        return Batch
    if name == "BatchError":
        from guardian.errors import BatchError

        return BatchError
    raise AttributeError(f"module 'guardian' has no attribute {name!r}")
