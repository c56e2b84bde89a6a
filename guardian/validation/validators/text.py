"""Text: the fallback for every file without a format of its own.

A NUL byte in a text file is almost always damage (a truncated write padded with zeros, a
binary tool writing over a text file), so it is an error. Since this validator is also the
default for files with unknown extensions, files that announce themselves as binary (by a
well-known signature such as PNG's or ZIP's, or by a well-known binary extension) are skipped
rather than failed. Text with a UTF-16/32 byte order mark is decoded first, so its NULs are
not mistaken for damage.

Options: ``encoding`` (e.g. "utf-8"): the text must decode strictly in it; by default no
encoding is required. ``max_line_length``: a warning for each longer line (at most 10).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Mapping
from typing import Any

from guardian.validation.validators.base import (
    WARNING,
    BaseValidator,
    OptionError,
    Problem,
    Skip,
    byte_position,
    decode_problem,
    opt_int,
    text_position,
)

MAX_LONG_LINES = 10

#: Signatures at offset 0 of formats that are binary by design. Those made of letters are
#: taken with the non-text byte that follows, so a text file starting "OTTO was here" or
#: "ID3 tags" is still checked as text.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"PK\x03\x04", "ZIP"), (b"PK\x05\x06", "ZIP"), (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x7fELF", "ELF"), (b"\xcf\xfa\xed\xfe", "Mach-O"), (b"\xca\xfe\xba\xbe", "Java class"),
    (b"SQLite format 3\x00", "SQLite"), (b"%PDF-", "PDF"), (b"\x00asm", "WebAssembly"),
    (b"wOFF\x00", "WOFF"), (b"wOF2\x00", "WOFF2"), (b"\x00\x01\x00\x00\x00", "TrueType"),
    (b"OTTO\x00", "OpenType"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"), (b"OggS\x00", "Ogg"), (b"fLaC\x00", "FLAC"),
    (b"ID3\x02", "MP3"), (b"ID3\x03", "MP3"), (b"ID3\x04", "MP3"), (b"\x1aE\xdf\xa3", "Matroska"),
    (b"\xd0\xcf\x11\xe0", "OLE2 (MS Office)"), (b"!<arch>\n", "ar archive"),
    (b"\x93NUMPY", "NumPy"), (b"\x89HDF\r\n\x1a\n", "HDF5"), (b"ARROW1\x00", "Arrow"),
)
_BINARY_EXTENSIONS = frozenset((
    ".pyc", ".pyo", ".so", ".o", ".a", ".dll", ".dylib", ".exe", ".bin", ".db", ".sqlite",
    ".sqlite3", ".class", ".jar", ".whl", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z",
    ".tar", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".pdf",
    ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4", ".wav", ".ogg", ".flac", ".mov",
    ".avi", ".mkv", ".npy", ".npz", ".pkl", ".pickle", ".parquet", ".h5", ".hdf5", ".onnx",
    ".pt", ".safetensors", ".wasm",
))
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class TextValidator(BaseValidator):
    name = "text"

    def skip_for_path(self, path: str, options: Mapping[str, Any]) -> str | None:
        """A file with a binary extension is skipped whatever it holds: known from the path
        alone, so a batch or a scan need not call the validator for each such file."""
        try:
            _options(options)
        except OptionError:
            return None  # reported by check
        kind = _binary_extension(path)
        return None if kind is None else f"binary file ({kind})"

    def check(self, data: bytes, path: str, options: Mapping[str, Any]) -> Iterable[Problem]:
        encoding, max_line = _options(options)
        kind = binary_kind(data, path)
        if kind is not None:
            raise Skip(f"binary file ({kind})")
        text: str | None = None
        problems: list[Problem] = []
        bom = next((enc for b, enc in _BOMS if data.startswith(b)), None)
        if bom is not None:  # UTF-16/32 text: look for NULs among characters, not bytes
            try:
                text = data.decode(bom)
            except UnicodeDecodeError as e:
                return [Problem(f"invalid {bom.upper()}: {e.reason}")]
            if "\0" in text:
                problems.append(Problem("NUL character in a text file",
                                        *text_position(text, text.index("\0"))))
        else:
            nul = data.find(b"\0")
            if nul >= 0:
                problems.append(Problem("NUL byte in a text file", *byte_position(data, nul)))
            if encoding is not None:
                try:
                    text = data.decode(encoding)
                except UnicodeDecodeError as e:
                    problems.append(decode_problem(data, e, _label(encoding)))
        if max_line is not None:
            if text is None:
                text = data.decode("utf-8", "replace")
            problems.extend(_long_lines(text, max_line))
        return problems


_MAGIC_PREFIXES = tuple(magic for magic, _kind in _MAGIC)


def _options(options: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(encoding, max_line_length), checked."""
    encoding = options.get("encoding")
    if encoding is not None:
        if not isinstance(encoding, str):
            raise OptionError(f"encoding must be a string, not {encoding!r}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise OptionError(f"unknown encoding {encoding!r}") from None
    return encoding, opt_int(options, "max_line_length", None, minimum=1)


def _binary_extension(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return f"{ext} file" if ext in _BINARY_EXTENSIONS else None


def binary_kind(data: bytes, path: str) -> str | None:
    """What binary format the file announces, by extension or signature; None for text."""
    by_name = _binary_extension(path)
    if by_name is not None:
        return by_name
    if data.startswith(_MAGIC_PREFIXES):  # one C-level test for the common case: text
        for magic, kind in _MAGIC:
            if data.startswith(magic):
                return kind
    if data.startswith(b"RIFF") and data[8:12] in (b"WAVE", b"AVI ", b"WEBP"):
        return f"RIFF {data[8:12].decode().strip()}"
    if data.startswith(b"BZh") and data[4:10] == b"1AY&SY":
        return "bzip2"
    return None


def _label(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name == "utf-8" else name


def _long_lines(text: str, limit: int) -> list[Problem]:
    problems = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if len(line) > limit:
            problems.append(Problem(f"line is {len(line)} characters long (limit {limit})",
                                    n, limit + 1, WARNING))
            if len(problems) == MAX_LONG_LINES:
                break
    return problems


VALIDATOR = TextValidator()
