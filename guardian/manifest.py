"""Batch operations: what a manifest (JSON or TOML) or the Python API asks to write.

One :class:`Operation` per entry; the shapes are an API::

    {"op": "write",  "path": "a.txt", "content": "text"}            # or content_base64
    {"op": "edit",   "path": "c.py", "old": "x = 1", "new": "x = 2"} # or "patch": unified diff
    {"op": "delete", "path": "e.txt"}
    {"op": "render", "path": "f.txt", "template": "Hello $name", "vars": {"name": "x"}}
                                                                     # or template_path
    {"op": "mkdir",  "path": "g/h"}

Optional on any write/edit/render: ``"mode": "0644"`` (octal string or number). Options of the
whole batch sit beside ``operations``: ``validate`` (default true), ``lock_timeout`` (seconds),
``session``. Errors name the operation by its index and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from guardian.errors import UsageError

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
    index: int
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


def load(text: str | bytes, source: str = "manifest") -> Manifest:
    """Parse a JSON or TOML manifest (JSON if it starts with '{')."""
    try:
        raw = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError as e:
        raise UsageError(f"{source}: not UTF-8 (byte {e.start})") from None
    try:
        doc = json.loads(raw) if raw.lstrip().startswith("{") else tomllib.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"{source}:{e.lineno}:{e.colno}: {e.msg}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{source}: {e}") from None
    return from_dict(doc, source)


def from_dict(doc: Any, source: str = "manifest") -> Manifest:
    if not isinstance(doc, dict) or not isinstance(doc.get("operations"), list):
        raise UsageError(f"{source}: expected an object with an \"operations\" list")
    for key in doc:
        if key != "operations" and key not in OPTIONS:
            raise UsageError(f"{source}: unknown key {key!r} (known: operations, "
                             f"{', '.join(sorted(OPTIONS))})")
    ops = [_operation(i, item, source) for i, item in enumerate(doc["operations"])]
    if not ops:
        raise UsageError(f"{source}: no operations")
    validate = doc.get("validate", True)
    timeout = doc.get("lock_timeout", 5.0)
    session = doc.get("session")
    if not isinstance(validate, bool):
        raise UsageError(f"{source}: validate: expected true or false")
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
        raise UsageError(f"{source}: lock_timeout: expected a number of seconds")
    if session is not None and not isinstance(session, str):
        raise UsageError(f"{source}: session: expected a string")
    return Manifest(ops, validate, float(timeout), session)


def _operation(i: int, item: Any, source: str) -> Operation:
    where = f"{source}: operation {i}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected an object")
    op = item.get("op")
    if op not in OPS:
        raise UsageError(f"{where}: op must be one of {', '.join(OPS)}, got {op!r}")
    path = item.get("path")
    if not isinstance(path, str) or not path:
        raise UsageError(f"{where} ({op}): path must be a non-empty string")
    where = f"{source}: operation {i} ({op} {path})"
    for key in item:
        if key not in ("op", "path") and key not in _KEYS[op]:
            raise UsageError(f"{where}: unknown key {key!r} for {op}")
    o = Operation(i, op, path, mode=_mode(item.get("mode"), where))
    if op == "write":
        if ("content" in item) == ("content_base64" in item):
            raise UsageError(f"{where}: give exactly one of content, content_base64")
        if "content" in item:
            if not isinstance(item["content"], str):
                raise UsageError(f"{where}: content must be a string")
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
            if not isinstance(item["patch"], str):
                raise UsageError(f"{where}: patch must be a string")
            o.patch = item["patch"]
        else:
            if not isinstance(item.get("old"), str) or not isinstance(item.get("new"), str):
                raise UsageError(f"{where}: edit needs old and new strings (or a patch)")
            if not item["old"]:
                raise UsageError(f"{where}: old must not be empty")
            o.old, o.new = item["old"], item["new"]
    elif op == "render":
        if ("template" in item) == ("template_path" in item):
            raise UsageError(f"{where}: give exactly one of template, template_path")
        if "template" in item:
            if not isinstance(item["template"], str):
                raise UsageError(f"{where}: template must be a string")
            o.template = item["template"]
        else:
            if not isinstance(item["template_path"], str):
                raise UsageError(f"{where}: template_path must be a string")
            o.template_path = item["template_path"]
        variables = item.get("vars", {})
        if not isinstance(variables, dict):
            raise UsageError(f"{where}: vars must be an object")
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
