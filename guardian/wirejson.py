"""JSON as the ``json`` package reads and writes it, from its C codec (``_json``) alone.

An agent hook runs on every tool call within a budget of 2.5x a bare interpreter start, and
``import json`` costs more than half a bare start: the package imports ``re`` (and with it
``enum`` and ``functools``) for the pure-Python fallbacks the C codec makes unused. The hook's
path reads payloads and writes replies and rows with this module instead: the same scanner
and encoder objects ``json.loads`` and ``json.dumps`` build, with their defaults. Whatever
this module does not do exactly as they do (a text the scanner stops on, bytes not UTF-8,
an object the encoder cannot take) is handed to the ``json`` package itself, so results and
errors are always its own.
"""

from __future__ import annotations

from _json import encode_basestring_ascii, make_encoder, make_scanner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WS = " \t\n\r"
_INF = float("inf")
_CONSTANTS = {"-Infinity": -_INF, "Infinity": _INF, "NaN": float("nan")}


class _Decoder:
    """What ``make_scanner`` reads of a ``json.JSONDecoder()`` with its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = make_scanner(_Decoder())  # type: ignore[arg-type]  # typeshed: any context object


def loads(s: str | bytes) -> Any:
    """``json.loads(s)``."""
    try:
        text = s.decode("utf-8") if isinstance(s, bytes) else s
        start = len(text) - len(text.lstrip(_WS))
        obj, end = _scan(text, start)
        if not text[end:].strip(_WS):
            return obj
    except (StopIteration, UnicodeDecodeError, ValueError, RecursionError, TypeError,
            SystemError):  # SystemError: 3.11's scanner, raising before json.decoder is loaded
        pass
    import json  # its own result, or its own error

    return json.loads(s)


def _no_default(o: object) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _encoder(sort_keys: bool, default: Callable[[Any], Any]) -> Any:
    return make_encoder({}, default, encode_basestring_ascii, None, ": ", ", ", sort_keys,
                        False, True)


_plain = _encoder(False, _no_default)


def dumps(obj: Any, *, sort_keys: bool = False,
          default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(obj, sort_keys=sort_keys, default=default)``."""
    if isinstance(obj, str):
        return str(encode_basestring_ascii(obj))
    encode = _plain if not sort_keys and default is None else \
        _encoder(sort_keys, default or _no_default)
    try:
        return "".join(encode(obj, 0))
    except (TypeError, ValueError, RecursionError):
        import json

        return json.dumps(obj, sort_keys=sort_keys, default=default)
