"""The tools ``guardian mcp`` offers, as plain functions: JSON-shaped arguments in, a
JSON-shaped result out, every refusal a :class:`ToolError` naming path, line, column and
category (the seed's five, plus ``usage`` and ``not_found``).

They do what the CLI does, through the same code: writes go through the batch engine
(:func:`guardian.api.apply`, the daemon's ``apply`` method when one runs, else the store
directly), restores through the ``restore`` method, history is read from the store. Every
path must lie inside the watched roots (the store's, or ``--root`` for a store not made yet).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardian.errors import (
    BatchError,
    DaemonError,
    GuardianError,
    NotFoundError,
    OutsideRootError,
    UsageError,
)
from guardian.exitcodes import ExitCode
from guardian.paths import Root, locate, show

#: The most bytes ``show_version`` returns of a version (a model reads every one).
MAX_SHOW_BYTES = 1024 * 1024
#: ``file_history`` lists at most this many versions unless asked for more.
DEFAULT_HISTORY = 20


class ToolError(Exception):
    """A refusal the model can read and act on: ``to_json`` is the tool's error result."""

    def __init__(self, message: str, *, category: str = "usage", path: str | None = None,
                 line: int | None = None, column: int | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.category, self.path, self.line, self.column = category, path, line, column
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        return {"ok": False, "error": {"message": str(self), "category": self.category,
                                       "path": self.path, "line": self.line,
                                       "column": self.column, **self.extra}}

    @classmethod
    def of(cls, e: GuardianError) -> ToolError:
        """Guardian's own error as a tool error (a BatchError keeps everything it names)."""
        if isinstance(e, BatchError):
            d = e.to_json()
            return cls(str(e), category=e.category, path=d["path"], line=e.line,
                       column=e.column, extra={"operation": e.index, "op": e.op,
                                               "rolled_back": e.rolled_back})
        if isinstance(e, DaemonError) and e.data:
            return cls.of(BatchError.from_json(e.data))
        category = ("permission" if isinstance(e, OutsideRootError) else
                    "not_found" if isinstance(e, NotFoundError) else
                    "usage" if e.exit_code == ExitCode.USAGE else "system")
        return cls(str(e), category=category)


@dataclass
class Context:
    """Where one ``guardian mcp`` run works: its base directory (``--root``, else the
    current directory), the store (``--store``/``$GUARDIAN_STORE``, else the one covering the
    base, else the one a first write creates) and the session its versions are labelled with.
    """

    base: Path
    store: Path | None = None
    session: str | None = None

    def store_path(self) -> Path:
        from guardian.locations import find_store_for, store_dir_for_roots

        return self.store or find_store_for(self.base) or store_dir_for_roots([self.base])

    def roots(self) -> list[Root]:
        """The store's roots; the base alone while no store exists (a write makes it)."""
        from guardian.store.db import Store

        path = self.store_path()
        if not (path / "guardian.db").is_file():
            return [Root(0, self.base)]
        with Store.open(path, write=False) as store:
            return store.roots()

    def resolve(self, path: Any, key: str = "path") -> tuple[Root, bytes, str]:
        """(root, relpath, absolute path) of a tool's path argument: relative to the base,
        inside a root, else a ``permission`` error."""
        if not isinstance(path, str) or not path:
            raise ToolError(f"{key} must be a non-empty string")
        if "\0" in path:
            raise ToolError(f"{key} contains a NUL character")
        full = path if os.path.isabs(path) else os.path.join(self.base, path)
        try:
            root, rel = locate(full, self.roots())
        except OutsideRootError as e:
            raise ToolError(str(e), category="permission", path=path) from None
        return root, rel, show(root.join(rel))

    def reader(self) -> Any:
        from guardian.store.db import Store

        path = self.store_path()
        if not (path / "guardian.db").is_file():
            raise ToolError(f"no Guardian store yet at {path}: nothing has been recorded "
                            "(run `guardian watch`, or write a file with write_files)",
                            category="not_found")
        return Store.open(path, write=False)


def _text(value: Any, key: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ToolError(f"{key} must be a string")
    return value


def _version_arg(value: Any, key: str) -> tuple[int | None, int | None]:
    """A version argument: an id (number, "12" or "v12") or a time ("15m", ISO 8601)."""
    from guardian.store.history import parse_version_spec

    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if not isinstance(value, str):
        raise ToolError(f"{key} must be a version id or a time")
    return parse_version_spec(value)


# ----------------------------------------------------------------------------- writes
def write_files(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """One batch: every operation or none, validated first (``guardian apply``)."""
    from guardian.batch import manifest as mf

    ops = args.get("operations")
    doc: dict[str, Any] = {"operations": ops}
    if "validate" in args:
        doc["validate"] = args["validate"]
    try:
        m = mf.from_dict(doc, "write_files")
    except UsageError as e:
        raise ToolError(str(e)) from None
    return _apply(ctx, m, bool(args.get("dry_run", False)))


def edit_file(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Replace the one occurrence of ``old_string`` (absent or ambiguous text refuses)."""
    path = _text(args.get("path"), "path")
    old = _text(args.get("old_string"), "old_string")
    new = _text(args.get("new_string"), "new_string")
    if not old:
        raise ToolError("old_string must not be empty", path=path)
    return write_files(ctx, {"operations": [{"op": "edit", "path": path, "old": old,
                                             "new": new}],
                             "dry_run": bool(args.get("dry_run", False))})


def _apply(ctx: Context, m: Any, dry_run: bool) -> dict[str, Any]:
    from guardian.api import apply

    try:
        out = apply(m, ctx.base, store=ctx.store, dry_run=dry_run, session=ctx.session)
    except GuardianError as e:
        raise ToolError.of(e) from None
    out["session"] = ctx.session
    return out


# ----------------------------------------------------------------------------- history
def file_history(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The versions of a file (or of the files under a directory), newest first."""
    from guardian.store.history import version_json

    limit = args.get("limit", DEFAULT_HISTORY)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ToolError("limit must be a whole number (0 = all)")
    root, rel, shown = ctx.resolve(args.get("path"))
    with ctx.reader() as store:
        by_id = {r.id: r for r in store.roots()}
        fid = store.file_id(root.id, rel, create=False) if rel else None
        if fid is not None:
            versions = store.versions_of(fid, limit=limit or None)
        else:
            versions = store.versions_under(root.id, rel, limit=limit or None)
        if not versions:
            raise ToolError(f"{shown}: no recorded versions", category="not_found", path=shown)
        return {"path": shown, "versions": [version_json(v, by_id) for v in versions]}


def show_version(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The content of one version (default: the newest with content)."""
    from guardian.store.history import content, is_binary, resolve, version_json

    vid, at_ns = _version_arg(args.get("version"), "version")
    root, rel, shown = ctx.resolve(args.get("path"))
    try:
        with ctx.reader() as store:
            v = resolve(store, root, rel, version=vid, at_ns=at_ns,
                        want_content=vid is None and at_ns is None)
            data = content(store, v, shown)
            meta = version_json(v, {r.id: r for r in store.roots()})
    except GuardianError as e:
        raise ToolError.of(e) from None
    out: dict[str, Any] = {"path": shown, "version": meta, "size": len(data),
                           "truncated": len(data) > MAX_SHOW_BYTES}
    data = data[:MAX_SHOW_BYTES]
    if is_binary(data):
        out["content_base64"] = base64.b64encode(data).decode()
    else:
        out["content"] = data.decode("utf-8")
    return out


def diff_versions(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """A unified diff: ``from`` (default: the newest version) against ``to`` (default: the
    file on disk); each a version id or a time."""
    import stat

    from guardian.store.history import content, resolve, unified_diff
    from guardian.timespec import short

    root, rel, shown = ctx.resolve(args.get("path"))
    try:
        with ctx.reader() as store:

            def side(spec: Any, key: str) -> tuple[bytes | None, str, int]:
                vid, at = _version_arg(spec, key)
                v = resolve(store, root, rel, version=vid, at_ns=at,
                            want_content=spec is None)
                data = content(store, v, shown) if v.present else None
                return data, f"{shown}\t(version {v.id}, {short(v.time_ns)})", v.id

            old, old_label, old_id = side(args.get("from"), "from")
            new_id: int | None = None
            if args.get("to") is not None:
                new, new_label, new_id = side(args["to"], "to")
            else:
                new_label = f"{shown}\t(on disk)"
                full = root.join(rel)
                try:
                    st = os.lstat(full)
                    new = (os.fsencode(os.readlink(full)) if stat.S_ISLNK(st.st_mode)
                           else _read_regular(full))
                except FileNotFoundError:
                    new = None
                except OSError as e:
                    raise ToolError(f"{shown}: cannot read: {e.strerror or e}",
                                    category="permission", path=shown) from None
    except GuardianError as e:
        raise ToolError.of(e) from None
    text = unified_diff(old, new, old_label, new_label)
    return {"path": shown, "from": old_id, "to": new_id if new_id is not None else "disk",
            "identical": not text, "diff": text}


#: The largest file on disk ``diff_versions`` and ``validate`` read.
MAX_READ_BYTES = 64 * 1024 * 1024


def _read_regular(path: bytes) -> bytes:
    """A file's bytes, refusing anything but a regular file (no FIFO is waited on) and
    anything over MAX_READ_BYTES."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{show(path)}: not a regular file", path=show(path))
        if st.st_size > MAX_READ_BYTES:
            raise ToolError(f"{show(path)}: larger than {MAX_READ_BYTES // 2**20} MiB",
                            path=show(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def restore(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """A file or a directory as it was (a version, or a time): a dry run unless
    ``dry_run`` is false, so the plan is seen first."""
    from guardian.client import as_writer
    from guardian.timespec import parse_time

    dry_run = args.get("dry_run", True)
    if not isinstance(dry_run, bool):
        raise ToolError("dry_run must be true or false")
    vid, at_ns = _version_arg(args.get("version"), "version")
    if args.get("at") is not None:
        if vid is not None or at_ns is not None:
            raise ToolError("give version or at, not both")
        try:
            at_ns = parse_time(_text(args["at"], "at") or "")
        except GuardianError as e:
            raise ToolError.of(e) from None
    root, rel, _shown = ctx.resolve(args.get("path"))
    ctx.reader().close()  # a clear error when nothing was ever recorded
    full = os.fsdecode(root.join(rel))
    params = {"path": full, "version": vid, "at_ns": at_ns, "dry_run": dry_run,
              "session": ctx.session}

    def direct(writer: Any) -> Any:
        from guardian.batch import recovery
        from guardian.service import Service

        if not dry_run:
            recovery.recover(writer)
        return Service(writer).restore(full, version=vid, at_ns=at_ns, dry_run=dry_run,
                                       session=ctx.session)

    try:
        out: dict[str, Any] = as_writer(ctx.store_path(), "restore", params, direct)
    except GuardianError as e:
        raise ToolError.of(e) from None
    out["session"] = ctx.session
    return out


def undo_session(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Every file a session changed, back as it was before it (guardian undo --session): a
    dry run unless ``dry_run`` is false; conflicts are left alone unless ``force``."""
    from guardian.agents.undo import request

    session = _text(args.get("session", ctx.session), "session") or ctx.session
    dry_run, force = args.get("dry_run", True), args.get("force", False)
    if not isinstance(dry_run, bool) or not isinstance(force, bool):
        raise ToolError("dry_run and force must be true or false")
    params: dict[str, Any] = {"session": session, "dry_run": dry_run, "force": force}
    try:
        return request(ctx.store_path(), params)
    except GuardianError as e:
        raise ToolError.of(e) from None


# ----------------------------------------------------------------------------- validate
def validate(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """What the rules for ``path`` say of ``content`` (default: the file on disk), without
    writing anything."""
    from guardian.rules.policy import Policy
    from guardian.validation.check import check

    root, rel, shown = ctx.resolve(args.get("path"))
    if "content" in args and "content_base64" in args:
        raise ToolError("give content or content_base64, not both", path=shown)
    if "content_base64" in args:
        try:
            data = base64.b64decode(_text(args["content_base64"], "content_base64") or "",
                                    validate=True)
        except ValueError:
            raise ToolError("content_base64 is not valid base64", path=shown) from None
    elif "content" in args:
        data = (_text(args["content"], "content") or "").encode("utf-8", "surrogateescape")
    else:
        try:
            data = _read_regular(root.join(rel))
        except FileNotFoundError:
            raise ToolError(f"{shown}: no such file (give content to check)",
                            category="not_found", path=shown) from None
        except OSError as e:
            raise ToolError(f"{shown}: cannot read: {e.strerror or e}", category="permission",
                            path=shown) from None
    try:
        eff = Policy({root.id: root}, strict=True).effective(root.id, rel)
    except GuardianError as e:
        raise ToolError.of(e) from None
    verdict = check(eff, data, shown)
    problems = [{"validator": name, "line": p.line, "column": p.column,
                 "severity": p.severity, "message": p.message}
                for name, p in verdict.problems()]
    return {"path": shown, "valid": verdict.valid, "problems": problems,
            "summary": verdict.summary(shown) if verdict.valid is False else "",
            "not_validated": verdict.not_validated(), "untrusted": list(verdict.untrusted),
            "validators": [r.validator for r in verdict.results],
            "on_invalid": eff.on_invalid, "protected": eff.protected}


#: name -> (function, description, input JSON Schema). The server lists them in this order.
_PATH = {"type": "string", "description": "a path relative to the project root, or absolute "
         "(inside the watched roots)"}
_VERSION = {"type": ["integer", "string"],
            "description": "a version id (12 or \"v12\") or a time (\"15m\", \"2h\", ISO 8601)"}
_OPERATION = {
    "type": "object",
    "required": ["op", "path"],
    "properties": {
        "op": {"enum": ["write", "edit", "delete", "render", "mkdir"]},
        "path": _PATH,
        "content": {"type": "string", "description": "write: the new content"},
        "content_base64": {"type": "string", "description": "write: bytes, base64"},
        "old": {"type": "string", "description": "edit: text occurring exactly once"},
        "new": {"type": "string", "description": "edit: its replacement"},
        "patch": {"type": "string", "description": "edit: a unified diff instead"},
        "template": {"type": "string", "description": "render: $name / ${name} template"},
        "template_path": {"type": "string", "description": "render: a template file"},
        "vars": {"type": "object", "description": "render: the template's variables"},
        "mode": {"type": ["string", "integer"], "description": "e.g. \"0644\""},
    },
}

def _args(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """A tool's input JSON Schema: an object of ``properties``, the ``required`` ones."""
    return {"type": "object", **({"required": required} if required else {}),
            "properties": properties}


def _flag(default: bool) -> dict[str, Any]:
    return {"type": "boolean", "default": default}


_TEXT = {"type": "string"}

TOOLS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "write_files": (write_files, (
        "Write, edit (exact string or unified diff), delete, render and mkdir many files as "
        "ONE all-or-nothing batch: every new content is validated by the project's rules "
        "first (syntax of Python/JSON/YAML/TOML..., schemas, protected paths, imports other "
        "files need), the old contents are stored, and either every file changes or none "
        "does. A refusal names the operation, path, line and column. dry_run shows the "
        "diff without writing."), _args(["operations"], {
            "operations": {"type": "array", "minItems": 1, "items": _OPERATION},
            "dry_run": _flag(False), "validate": _flag(True)})),
    "edit_file": (edit_file, (
        "Replace the one occurrence of old_string by new_string in a file, validated and "
        "backed up first; fails if old_string is absent or occurs more than once (give more "
        "context)."), _args(["path", "old_string", "new_string"], {
            "path": _PATH, "old_string": {"type": "string", "minLength": 1},
            "new_string": _TEXT, "dry_run": _flag(False)})),
    "file_history": (file_history, (
        "The recorded versions of a file, or of every file under a directory, newest first: "
        "id, time, kind, origin, size, sha256, valid, session."), _args(["path"], {
            "path": _PATH, "limit": {"type": "integer", "minimum": 0,
                                     "default": DEFAULT_HISTORY, "description": "0 = all"}})),
    "show_version": (show_version, (
        "The content of one recorded version of a file (default: the newest with content); "
        f"at most {MAX_SHOW_BYTES // 1024} KiB, binary content as base64."),
        _args(["path"], {"path": _PATH, "version": _VERSION})),
    "diff_versions": (diff_versions, (
        "A unified diff between two versions of a file, or a version and the file on disk "
        "(from defaults to the newest version, to to the disk)."),
        _args(["path"], {"path": _PATH, "from": _VERSION, "to": _VERSION})),
    "restore": (restore, (
        "Put a file back as it was at a version, or a file or whole directory as it was at a "
        "time (files deleted since come back, files created since go; current contents are "
        "stored first; all or nothing). A dry run listing each file's fate unless dry_run is "
        "false: call it once to see the plan, then again with dry_run false."), _args(["path"], {
            "path": _PATH, "version": _VERSION,
            "at": {"type": "string", "description": "a time: \"15m\", ISO 8601"},
            "dry_run": _flag(True)})),
    "undo_session": (undo_session, (
        "Undo a whole session (default: this one): every file it changed goes back as it was "
        "before it (files it created removed, files it deleted restored, shell-made changes "
        "seen by Guardian's hooks included), as one all-or-nothing batch. A file someone else "
        "changed afterwards is a conflict, left alone unless force. A dry run (a diffstat of "
        "the plan) unless dry_run is false."),
        _args([], {"session": _TEXT, "dry_run": _flag(True), "force": _flag(False)})),
    "validate": (validate, (
        "What the project's rules say of a content for a path, before writing it: the "
        "validators that apply, each problem with line and column, whether the path is "
        "protected. Without content, the file on disk is checked."),
        _args(["path"], {"path": _PATH, "content": _TEXT, "content_base64": _TEXT})),
}
