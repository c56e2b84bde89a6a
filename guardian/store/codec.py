"""The whole-copy encoding of an object (codecs "raw" and "zstd"), with nothing but the zstd
C extension: :mod:`guardian.store.objects` and the no-daemon hook (:mod:`guardian.store.
lean_write`) encode with this one function, so the two never store the same bytes
differently.

Why a module of its own: the hook's start-up is its budget (2.5x a bare ``python3 -c
pass``). ``import zstandard`` runs the package's ``__init__``, which imports ``platform``
and ``typing`` (~12 ms, more than a bare interpreter's start); its C backend alone loads in
~0.5 ms and is the same code (the package re-exports it), so :func:`zstd` loads that when it
can and the package otherwise.
"""

from __future__ import annotations

import os
import sys
from _thread import _local  # threading costs an import the hook does not need

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ZSTD_LEVEL = 3
#: Below this many bytes an object is stored as it is (a zstd frame would not be smaller).
MIN_COMPRESS = 64

_state = _local()
_backend: Any = None


def zstd() -> Any:
    """The zstandard module's C backend (``zstandard.backend_c``, whose classes the package
    re-exports), loaded on its own; the package itself when that cannot be done (another
    import policy, another interpreter, another layout)."""
    global _backend
    if _backend is not None:
        return _backend
    if os.environ.get("PYTHON_ZSTANDARD_IMPORT_POLICY", "default").strip() == "default" \
            and sys.implementation.name == "cpython":
        try:
            _backend = _load_backend()
        except Exception:  # any failure: the package's own import
            _backend = None
    if _backend is None:
        import zstandard

        _backend = zstandard
    return _backend


def _load_backend() -> Any:
    import _imp

    mod = sys.modules.get("zstandard.backend_c")
    if mod is not None:
        return mod
    for d in sys.path:
        for suffix in _imp.extension_suffixes():
            path = os.path.join(d or ".", "zstandard", "backend_c" + suffix)
            if os.path.isfile(path) and os.path.isfile(
                    os.path.join(d or ".", "zstandard", "__init__.py")):
                spec: Any = _Spec("zstandard.backend_c", path)  # a ModuleSpec costs importlib
                return _imp.create_dynamic(spec)
    return None  # not found where `import zstandard` would look first: the package's import


class _Spec:
    """What ``_imp.create_dynamic`` reads of a module spec."""

    def __init__(self, name: str, origin: str) -> None:
        self.name = name
        self.origin = origin


def _compressor() -> Any:
    c = getattr(_state, "c", None)
    if c is None:
        c = _state.c = zstd().ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return c


def compress(data: bytes) -> tuple[str, bytes]:
    """(codec, stored bytes) of a whole copy; thread-safe, and releases the GIL while
    compressing."""
    if len(data) < MIN_COMPRESS:
        return "raw", data
    packed: bytes = _compressor().compress(data)
    if len(packed) >= len(data):
        return "raw", data
    return "zstd", packed


def compress_many(datas: list[bytes]) -> list[tuple[str, bytes]]:
    """:func:`compress` of each of ``datas``, the same bytes, in one call of the C backend
    (``multi_compress_to_buffer``) that holds no GIL from the first to the last: a thread
    compressing a thousand small files this way runs beside Python code, where a loop of
    :func:`compress` would wait for the GIL after each one (up to the 5 ms switch interval)."""
    out: list[tuple[str, bytes]] = [("raw", d) for d in datas]
    todo = [i for i, d in enumerate(datas) if len(d) >= MIN_COMPRESS]
    if not todo:
        return out
    c = _compressor()
    many = getattr(c, "multi_compress_to_buffer", None)  # the C backend's; not in cffi's
    if many is None or len(todo) == 1:
        for i in todo:
            out[i] = compress(datas[i])
        return out
    packed = many([datas[i] for i in todo], threads=0)
    for n, i in enumerate(todo):
        frame = packed[n].tobytes()
        if len(frame) < len(datas[i]):
            out[i] = ("zstd", frame)
    return out
