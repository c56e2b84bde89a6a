"""Batch operations: what a manifest (JSON, TOML or YAML) or the Python API asks to write.

One :class:`Operation` per entry; the shapes are an API::

    {"op": "write",  "path": "a.txt", "content": "text"}            # or content_base64
    {"op": "edit",   "path": "c.py", "old": "x = 1", "new": "x = 2"} # or "patch": unified diff
    {"op": "delete", "path": "e.txt"}
    {"op": "render", "path": "f.txt", "template": "Hello $name", "vars": {"name": "x"}}
                                                                     # or template_path
    {"op": "mkdir",  "path": "g/h"}

Optional on any write/edit/render: ``"mode": "0644"`` (octal string or number). Options of the
whole batch sit beside ``operations``: ``validate`` (default true), ``lock_timeout`` (seconds),
``session``. Errors name the operation by its number (from 1) and what is wrong with it.

A manifest is input a person or an agent wrote: it is bounded before anything trusts it
(:data:`MAX_MANIFEST_BYTES`, :data:`MAX_DEPTH` levels of nesting, paths of at most
:data:`PATH_MAX` bytes and :data:`NAME_MAX` per component, no NUL in a path, no lone
surrogate in any text), so every bad manifest is a one-line usage error, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from guardian.errors import UsageError

#: A manifest larger than this is refused before it is parsed (it is held in memory, twice).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: Nesting deeper than this is refused (the parsers and json.dumps recurse on it).
MAX_DEPTH = 64
#: Linux's limits: a path of more bytes, or a component of more, cannot name a file.
PATH_MAX = 4096
NAME_MAX = 255
#: The longest lock_timeout a batch may ask for (seconds).
MAX_LOCK_TIMEOUT = 24 * 3600.0
#: The formats a manifest may be in, by the extension of its file name.
FORMATS = {".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}
ACCEPTED = "a manifest is JSON, TOML or YAML (by extension: .json, .toml, .yaml or .yml)"
_YAML_START = re.compile(r"(?m)^(?:---[ \t]*\n)?[\"']?operations[\"']?[ \t]*:")

OPS = ("write", "edit", "delete", "render", "mkdir")
_KEYS = {
    "write": {"content", "content_base64", "mode"},
    "edit": {"old", "new", "patch", "mode"},
    "delete": set(),
    "render": {"template", "template_path", "vars", "mode"},
    "mkdir": {"mode"},
}
OPTIONS = {"validate", "lock_timeout", "session"}


@dataclass
class Operation:
    index: int  # its number in the manifest, from 1 (what every message calls it)
    op: str
    path: str
    content: bytes | None = None
    old: str | None = None
    new: str | None = None
    patch: str | None = None
    template: str | None = None
    template_path: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    mode: int | None = None

    def describe(self) -> str:
        return f"operation {self.index} ({self.op} {self.path})"

    def to_json(self) -> dict[str, Any]:
        """The wire form (the daemon takes the same shape as a manifest)."""
        d: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.content is not None:
            d["content_base64"] = base64.b64encode(self.content).decode()
        for key in ("old", "new", "patch", "template", "template_path"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.vars:
            d["vars"] = self.vars
        if self.mode is not None:
            d["mode"] = self.mode
        return d


@dataclass
class Manifest:
    operations: list[Operation]
    validate: bool = True
    lock_timeout: float = 5.0
    session: str | None = None
    #: Where a ``template_path`` may be besides the targets' roots: the other watched roots
    #: and the manifest file's own directory. Set by whoever runs the batch (the service, the
    #: benchmark), never by a manifest's text: a manifest must not widen where it may read.
    template_dirs: tuple[str, ...] = ()


def load(text: str | bytes, source: str = "manifest") -> Manifest:
    """Parse a manifest: JSON, TOML or YAML by the extension of ``source``; otherwise (stdin)
    JSON if it starts with '{', YAML if a line starts with ``operations:``, else TOML."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise UsageError(f"{source}: larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB "
                         "(split it into several batches)")
    try:
        raw = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError as e:
        raise UsageError(f"{source}: not UTF-8 (byte {e.start})") from None
    fmt = FORMATS.get(os.path.splitext(source)[1].lower())
    hint = "" if fmt else f" ({ACCEPTED})"
    if fmt is None:
        fmt = ("json" if raw.lstrip().startswith("{") else
               "yaml" if _YAML_START.search(raw) else "toml")
    try:
        if fmt == "json":
            doc = json.loads(raw)
        elif fmt == "toml":
            doc = tomllib.loads(raw)
        else:
            doc = _load_yaml(raw, source)
    except json.JSONDecodeError as e:
        raise UsageError(f"{source}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}{hint}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{source}: invalid TOML: {e}{hint}") from None
    except RecursionError:  # json and tomllib recurse per level: Python stops them cleanly
        raise UsageError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits
        why = ("a number has more than 4300 digits" if "integer string conversion" in str(e)
               else str(e))
        raise UsageError(f"{source}: invalid {fmt.upper()}: {why}") from None
    return from_dict(doc, source)


def _load_yaml(raw: str, source: str) -> Any:
    """YAML, safely: the event stream is walked first (a loop, no recursion) to bound the
    nesting and refuse aliases, so the C composer, which recurses and would overflow the C
    stack on deep input, and json.dumps, which would expand shared aliases, never see either.
    """
    import yaml  # only for YAML manifests: costly to import

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    depth = 0
    try:
        for event in yaml.parse(raw, Loader=loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise UsageError(f"{source}:{_yaml_where(event)}: nested more than "
                                     f"{MAX_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                raise UsageError(f"{source}:{_yaml_where(event)}: YAML aliases (*name) are "
                                 "not allowed in a manifest")
        return yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""
        raise UsageError(f"{source}:{where} invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{source}: invalid YAML: {e}") from None


def _yaml_where(event: Any) -> str:
    mark = event.start_mark
    return f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "?"


def from_dict(doc: Any, source: str = "manifest") -> Manifest:
    if not isinstance(doc, dict) or not isinstance(doc.get("operations"), list):
        raise UsageError(f"{source}: expected an object with an \"operations\" list")
    for key in doc:
        if key != "operations" and key not in OPTIONS:
            raise UsageError(f"{source}: unknown key {key!r} (known: operations, "
                             f"{', '.join(sorted(OPTIONS))})")
    ops = [_operation(i, item, source) for i, item in enumerate(doc["operations"], 1)]
    if not ops:
        raise UsageError(f"{source}: no operations")
    validate = doc.get("validate", True)
    timeout = doc.get("lock_timeout", 5.0)
    session = doc.get("session")
    if not isinstance(validate, bool):
        raise UsageError(f"{source}: validate: expected true or false")
    if (not isinstance(timeout, int | float) or isinstance(timeout, bool)
            or not 0 <= timeout <= MAX_LOCK_TIMEOUT):  # NaN compares false: refused too
        raise UsageError(f"{source}: lock_timeout: expected a number of seconds from 0 to "
                         f"{MAX_LOCK_TIMEOUT:.0f}")
    if session is not None:
        session = check_session(session, f"{source}: session")
    return Manifest(ops, validate, float(timeout), session)


def check_session(value: Any, where: str) -> str:
    """A session label: a string of at most 1,000 characters that is valid text."""
    if not isinstance(value, str):
        raise UsageError(f"{where}: expected a string")
    if len(value) > 1000:
        raise UsageError(f"{where}: longer than 1000 characters")
    _text(value, where, strict=True)
    return value


def _check_depth(value: Any, where: str, depth: int) -> None:
    """Refuse nesting deeper than MAX_DEPTH (counted from the manifest's top), walking with
    an explicit stack. Only ``vars`` can nest (every other value must be a scalar), and what
    the Python API builds never went through a parser's bound."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UsageError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def check_path(value: Any, where: str, key: str = "path") -> str:
    """A path a manifest names: a non-empty string Linux can name a file with."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: {key} must be a non-empty string")
    if "\0" in value:
        raise UsageError(f"{where}: {key} contains a NUL character (character "
                         f"{value.index(chr(0)) + 1})")
    _text(value, where, key=key)
    if len(value) <= NAME_MAX and value.isascii():
        return value  # the common case: nothing longer than a name
    encoded = os.fsencode(value)
    if len(encoded) > PATH_MAX:
        raise UsageError(f"{where}: {key} is {len(encoded)} bytes long; at most {PATH_MAX}")
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        raise UsageError(f"{where}: {key} has a component of {len(longest)} bytes; at most "
                         f"{NAME_MAX} ({os.fsdecode(longest[:40])}…)")
    return value


def _first_of(item: dict[str, Any], first: str, second: str, where: str) -> bool:
    """Whether ``item`` gives ``first`` rather than ``second``: it must give exactly one."""
    if (first in item) == (second in item):
        raise UsageError(f"{where}: give exactly one of {first}, {second}")
    return first in item


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item[key]
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key} must be a string")
    return value


def _text(value: str, where: str, *, key: str | None = None, strict: bool = False) -> None:
    """Refuse a lone surrogate (JSON's "\\ud800" alone): it encodes to no byte. With
    ``strict`` even the escapes of non-UTF-8 bytes are refused (text that must be UTF-8).
    Checked by the codec, in C: a regex scan of every content cost more than the parse."""
    if value.isascii():
        return
    try:
        value.encode("utf-8", "strict" if strict else "surrogateescape")
    except UnicodeEncodeError as e:
        what = f"{key} has" if key else "has"
        raise UsageError(f"{where}: {what} a lone surrogate U+{ord(value[e.start]):04X} at "
                         f"character {e.start + 1} (a \\u escape of a surrogate must be "
                         "one of a pair; content_base64 takes any bytes)") from None


def _operation(i: int, item: Any, source: str) -> Operation:
    where = f"{source}: operation {i}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected an object")
    op = item.get("op")
    if op not in OPS:
        raise UsageError(f"{where}: op must be one of {', '.join(OPS)}, got {op!r}")
    path = check_path(item.get("path"), f"{where} ({op})")
    where = f"{source}: operation {i} ({op} {path})"
    for key in item:
        if key not in ("op", "path") and key not in _KEYS[op]:
            raise UsageError(f"{where}: unknown key {key!r} for {op}")
    for key in ("old", "new", "patch", "template"):
        if isinstance(item.get(key), str):
            _text(item[key], where, key=key, strict=True)
    o = Operation(i, op, path, mode=_mode(item.get("mode"), where))
    if op == "write":
        if _first_of(item, "content", "content_base64", where):
            _text(_string(item, "content", where), where, key="content")
            o.content = item["content"].encode("utf-8", "surrogateescape")
        else:
            try:
                o.content = base64.b64decode(item["content_base64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise UsageError(f"{where}: content_base64 is not valid base64") from None
    elif op == "edit":
        if "patch" in item:
            if "old" in item or "new" in item:
                raise UsageError(f"{where}: give either old/new or patch, not both")
            o.patch = _string(item, "patch", where)
        else:
            if not isinstance(item.get("old"), str) or not isinstance(item.get("new"), str):
                raise UsageError(f"{where}: edit needs old and new strings (or a patch)")
            if not item["old"]:
                raise UsageError(f"{where}: old must not be empty")
            o.old, o.new = item["old"], item["new"]
    elif op == "render":
        if _first_of(item, "template", "template_path", where):
            o.template = _string(item, "template", where)
        else:
            o.template_path = check_path(item["template_path"], where, "template_path")
        variables = item.get("vars", {})
        if not isinstance(variables, dict):
            raise UsageError(f"{where}: vars must be an object")
        _check_depth(variables, where, 4)  # the manifest, operations, the operation, vars
        for name, value in variables.items():
            if isinstance(value, str):  # rendered as text: it must encode
                _text(value, where, key=f"vars.{name}", strict=True)
        o.vars = variables
    return o


def _mode(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise UsageError(f"{where}: mode must be octal, e.g. \"0644\"") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise UsageError(f"{where}: mode must be between 0 and 07777")
    return value
