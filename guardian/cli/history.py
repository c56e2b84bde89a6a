"""Recording and reading history: ``snapshot``, ``log``, ``show``, ``diff``, ``restore``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from guardian.cli.common import (
    explicit_store,
    find_store,
    human_size,
    open_reader,
    print_json,
    resolve_at,
    session_of,
)
from guardian.cli.quick import result_line
from guardian.cli.rules import ignored_text, rule_set, why_ignored
from guardian.errors import GuardianError, NotFoundError, UsageError
from guardian.exitcodes import ExitCode

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~5 ms per call
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from guardian.paths import Root
    from guardian.store.db import Version
    from guardian.writer import Writer



_SKIPPED_SHOWN = 50


def cmd_snapshot(args: argparse.Namespace) -> int:
    from guardian.client import as_writer
    from guardian.locations import find_store_for, read_store_roots, store_dir_for_roots
    from guardian.paths import Root, absolute, locate

    cwd = Path.cwd()
    targets = [absolute(p) for p in args.paths]
    store_path = explicit_store(args) or find_store_for(targets[0] if targets else cwd)
    roots = read_store_roots(store_path) if store_path is not None else []
    new_roots: list[Path] = []
    if not roots:
        # A new store: its roots are the paths given (a file's directory), like `watch ROOT`
        # and `apply --root`; with none, the current directory.
        for p, t in zip(args.paths, targets, strict=True):
            if not os.path.lexists(t):
                raise UsageError(f"{p}: no such file or directory")
        new_roots = roots_for(targets) if targets else [cwd]
        store_path = store_path or store_dir_for_roots(new_roots)
        roots = new_roots
    assert store_path is not None
    fake = [Root(i, r) for i, r in enumerate(roots)]
    paths = []
    for p in args.paths:
        locate(p, fake)  # a one-line error for a path outside the roots, before any work
        paths.append(os.fsdecode(absolute(p)))

    def direct(writer: Writer) -> Any:
        from guardian.progress import Progress
        from guardian.service import Service

        progress = Progress("snapshot")
        try:
            return Service(writer).snapshot(paths, session=session_of(args), progress=progress)
        finally:
            progress.close()

    out = as_writer(store_path, "snapshot",
                    {"paths": paths, "session": session_of(args), "full": args.full}, direct,
                    create=True, roots=new_roots)
    if args.json:
        print_json(out)
    else:
        shown = 20
        for v in out["versions"][:shown]:
            print(f"{v['kind']:<9} {v['path']}")
        if len(out["versions"]) > shown:
            print(f"… and {len(out['versions']) - shown} more (guardian log lists them)")
        for w in out["warnings"]:
            print(f"warning: {w['path']}: {w['message']}", file=sys.stderr)
        labelled = len(out.get("labelled", []))
        also = f" ({labelled} labelled with session {session_of(args)})" if labelled else ""
        print(result_line(out, also))
    return ExitCode.OK


def roots_for(targets: list[Path]) -> list[Path]:
    """The roots of a new store for these paths: each directory itself, a file's (or a
    symlink's) directory; a root inside another is left to the outer one."""
    from guardian.paths import check_root

    dirs = [t if t.is_dir() and not t.is_symlink() else t.parent for t in targets]
    roots = sorted(dict.fromkeys(check_root(d) for d in dirs), key=lambda r: len(r.parts))
    out: list[Path] = []
    for r in roots:
        if not any(o == r or o in r.parents for o in out):
            out.append(r)
    return out


def cmd_log(args: argparse.Namespace) -> int:
    from guardian.paths import locate, show
    from guardian.store.history import version_json

    with open_reader(args, args.path) as store:
        roots = store.roots()
        by_id = {r.id: r for r in roots}
        limit = args.limit
        if args.path:
            root, rel = locate(args.path, roots)
            fid = store.file_id(root.id, rel, create=False) if rel else None
            if fid is not None:
                versions = store.versions_of(fid, limit=limit or None)
            else:
                versions = store.versions_under(root.id, rel, limit=50 if limit is None
                                                else (limit or None))
            if not versions:
                shown = show(root.join(rel))
                why = why_ignored(root.path, os.fsdecode(rel), os.path.isdir(root.join(rel)),
                                   store.path, rule_set(root.path))
                if why is not None:
                    raise NotFoundError(f"{shown} is ignored {ignored_text(why)}; Guardian "
                                        "does not record it")
                raise NotFoundError(f"{shown}: no recorded versions")
        else:
            versions = store.versions_under(None, limit=50 if limit is None else (limit or None))
    if args.json:
        print_json({"versions": [version_json(v, by_id) for v in versions]})
    elif versions:
        print(render_log(versions, by_id))
    return ExitCode.OK


def render_log(versions: list[Version], roots: dict[int, Root]) -> str:
    """One line per version: id, time, kind, origin, size, digest, path (relative to the
    current directory when under it), note."""
    from guardian.paths import show
    from guardian.timespec import short

    cwd = os.fsencode(os.getcwd()) + b"/"
    lines = []
    for v in versions:
        r = roots.get(v.root_id)
        full = r.join(v.relpath) if r else v.relpath
        shown = show(full[len(cwd):] if full.startswith(cwd) else full)
        digest = (v.sha256 or "-")[:12]
        note = f"  ({v.note})" if v.note else ""
        lines.append(f"{v.id:>7}  {short(v.time_ns)}  {v.kind:<9} {v.origin:<8} "
                     f"{human_size(v.size):>7}  {digest:<12}  {shown}{note}")
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    from guardian.paths import locate, show
    from guardian.store.history import content, resolve

    at_ns = resolve_at(args)
    with open_reader(args, args.path) as store:
        root, rel = locate(args.path, store.roots())
        v = resolve(store, root, rel, version=args.version_id, at_ns=at_ns,
                    want_content=args.version_id is None and at_ns is None)
        data = content(store, v, show(root.join(rel)))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return ExitCode.OK


def cmd_diff(args: argparse.Namespace) -> int:
    import stat

    from guardian.paths import locate, show
    from guardian.store.history import content, parse_version_spec, resolve, unified_diff
    from guardian.timespec import short

    with open_reader(args, args.path) as store:
        root, rel = locate(args.path, store.roots())
        shown = show(root.join(rel))

        def side(spec: str | None) -> tuple[bytes | None, str]:
            vid, at = parse_version_spec(spec) if spec else (None, None)
            v = resolve(store, root, rel, version=vid, at_ns=at, want_content=spec is None)
            data = content(store, v, shown) if v.present else None
            return data, f"{shown}\t(version {v.id}, {short(v.time_ns)})"

        old, old_label = side(args.from_)
        if args.to:
            new, new_label = side(args.to)
        else:
            path = root.join(rel)
            new_label = f"{shown}\t(on disk)"
            try:
                st = os.lstat(path)
                new = os.readlink(path) if stat.S_ISLNK(st.st_mode) else Path(
                    os.fsdecode(path)).read_bytes()
            except FileNotFoundError:
                new = None
            except OSError as e:
                raise GuardianError(f"{shown}: cannot read: {e.strerror or e}") from None
    text = unified_diff(old, new, old_label, new_label)
    sys.stdout.write(text)
    return ExitCode.FAILURE if (args.exit_code and text) else ExitCode.OK


def cmd_restore(args: argparse.Namespace) -> int:
    from guardian.client import as_writer
    from guardian.errors import BatchError, DaemonError
    from guardian.paths import absolute
    from guardian.service import Service

    at_ns = resolve_at(args)
    store_path = find_store(args, args.path)
    path = os.fsdecode(absolute(args.path))
    params = {"path": path, "version": args.version_id, "at_ns": at_ns,
              "dry_run": args.dry_run, "session": session_of(args)}

    def direct(writer: Writer) -> Any:
        from guardian.batch import recovery

        if not args.dry_run:
            recovery.recover(writer)  # a batch a crash interrupted comes first
        return Service(writer).restore(path, version=args.version_id, at_ns=at_ns,
                                       dry_run=args.dry_run, session=session_of(args))

    try:
        out = as_writer(store_path, "restore", params, direct)
    except (BatchError, DaemonError) as e:
        # Refused (a conflict, a lock, something in the way) or rolled back: nothing changed.
        data = e.to_json() if isinstance(e, BatchError) else e.data
        if isinstance(e, DaemonError) and not data:
            raise
        if args.json:
            print_json({"ok": False, "error": data})
            return ExitCode.FAILURE
        raise GuardianError(str(e), exit_code=ExitCode.FAILURE) from None
    if args.json:
        print_json(out)
        return ExitCode.OK
    changes, skipped, total = render_restore(out)
    if changes:
        print(changes)
    if skipped:
        print(skipped, file=sys.stderr)
    print(total)
    return ExitCode.OK


def render_restore(out: dict[str, Any]) -> tuple[str, str, str]:
    """A restore's (or its dry run's) changes, the files it skipped (for stderr), and its
    last line."""
    verb = "would " if out["dry_run"] else ""
    changes = [f"{verb}{c['action']:<6} {c['path']}"
               + (f" (from version {c['from_version']})" if c["from_version"] else "")
               for c in out["changes"]]
    changes += [f"{verb}rmdir  {d}/" for d in out.get("removed_dirs", [])]
    skipped = [f"skipped {s['path']}: {s['reason']}" for s in out["skipped"][:_SKIPPED_SHOWN]]
    if len(out["skipped"]) > _SKIPPED_SHOWN:
        skipped.append(f"skipped {len(out['skipped']) - _SKIPPED_SHOWN} more (--json lists "
                       "them all)")
    n = len(out["changes"])
    total = (f"{n} file{'s' if n != 1 else ''} {'to change' if verb else 'restored'}, "
             f"{out['unchanged']} already as wanted")
    return "\n".join(changes), "\n".join(skipped), total

