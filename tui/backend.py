"""The TUI's one door into the core: reads, restores, acknowledgements and the event feed.

Reads go to a read-only store connection (safe beside a writing daemon; the only choice when
none runs). Writes go where the CLI's go: ``guardian.client.as_writer`` sends them to the
daemon when one runs, else takes the writer lock and runs the same Service call. Every
method blocks: screens call them from workers, never from the event loop.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardian.client import Subscription, as_writer, daemon, subscribe
from guardian.paths import Root
from guardian.store.db import Store, Version
from guardian.store.tree import PathEntry

if TYPE_CHECKING:
    from guardian.agents.touched import Touched

#: The window the dashboard's KPIs are computed over.
METRICS_WINDOW_S = 3600


#: One path of the restore tree: a file the store knows, or a directory of them.
Entry = PathEntry
#: A directory's children, and whether it had more than were asked for.
Listing = tuple[list[Entry], bool]


class Backend:
    """A store, and the daemon writing it if one runs."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = Path(store_path)
        self._lock = threading.Lock()
        self._reader: Store | None = None

    # ----------------------------------------------------------------- reads
    def read(self, fn: Callable[[Store], Any]) -> Any:
        """Run ``fn`` on the read-only connection (one thread at a time)."""
        with self._lock:
            if self._reader is None:
                self._reader = Store.open(self.store_path, write=False)
            return fn(self._reader)

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def attached(self) -> bool:
        conn = daemon(self.store_path, timeout=5)
        if conn is None:
            return False
        conn.close()
        return True

    def status(self) -> dict[str, Any]:
        """The daemon's ``status``; without one, the same shape from the store."""
        conn = daemon(self.store_path, timeout=5)
        if conn is not None:
            with conn:
                out: dict[str, Any] = conn.call("status")
                return out
        from guardian.store.db import store_size

        def build(s: Store) -> dict[str, Any]:
            c = s.counts()
            return {"running": False, "ready": False, "store": str(self.store_path),
                    "roots": [str(r.path) for r in s.roots()], "files": c["files"],
                    "versions": c["versions"], "store_bytes": store_size(self.store_path),
                    "last_event_ns": c["last_version_ns"], "degraded": False,
                    "degraded_causes": [], "uptime_s": None,
                    "reconcile_count": int(s.meta_get("reconcile_count") or 0)}

        result: dict[str, Any] = self.read(build)
        return result

    def metrics(self, now_ns: int | None = None) -> dict[str, Any]:
        from guardian.observe.metrics import compute

        now = time.time_ns() if now_ns is None else now_ns
        out: dict[str, Any] = self.read(lambda s: compute(
            s, since_ns=now - METRICS_WINDOW_S * 10**9, until_ns=now))
        return out

    def alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        from guardian.observe.alerts import to_json

        rows = self.read(lambda s: s.alert_list(limit=limit))
        return [to_json(a) for a in rows]

    def children(self, root_id: int, directory: bytes, limit: int) -> Listing:
        """One directory of the tree (and whether it has more than ``limit`` children)."""
        out: Listing = self.read(
            lambda s: s.tree_children(root_id, directory, limit=limit))
        return out

    def search(self, text: str, *, root_id: int | None, state: str | None,
               live_only: bool, limit: int) -> list[Entry]:
        """The files a filter shows (see :meth:`~guardian.store.tree.PathTree.path_search`)."""
        found: list[Entry] = self.read(lambda s: s.path_search(
            text, root_id=root_id, state=state, live_only=live_only, limit=limit))
        return found

    def path_count(self) -> int:
        n: int = self.read(lambda s: s.path_count())
        return n

    def versions(self, root_id: int, relpath: bytes) -> list[Version]:
        def get(s: Store) -> list[Version]:
            fid = s.file_id(root_id, relpath, create=False)
            return [] if fid is None else s.versions_of(fid)

        found: list[Version] = self.read(get)
        return found

    def versions_under(self, root_id: int | None, relpath: bytes,
                       limit: int = 5000) -> list[Version]:
        found: list[Version] = self.read(lambda s: s.versions_under(root_id, relpath,
                                                                    limit=limit))
        return found

    def content(self, v: Version) -> bytes | None:
        """A version's bytes; None for a deletion or a version kept as metadata only."""
        oid = v.object_id
        if not v.present or oid is None:
            return None
        from guardian.store.objects import Objects

        data: bytes = self.read(lambda s: Objects(s).get(oid))
        return data

    def on_disk(self, root: Root, relpath: bytes) -> bytes | None:
        import stat

        path = root.join(relpath)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                return os.readlink(path)
            if not stat.S_ISREG(st.st_mode):
                return None
            with open(path, "rb") as f:  # a regular file: no FIFO can block us here
                return f.read()
        except OSError:
            return None

    # ----------------------------------------------------------------- writes
    def restore(self, path: str, *, version: int | None = None, at_ns: int | None = None,
                dry_run: bool = False) -> dict[str, Any]:
        """``guardian restore`` (the same request, the same engine, recorded the same way)."""
        from guardian.service import Service

        def direct(writer: Any) -> Any:
            from guardian.batch import recovery

            if not dry_run:
                recovery.recover(writer)
            return Service(writer).restore(path, version=version, at_ns=at_ns, dry_run=dry_run)

        params = {"path": path, "version": version, "at_ns": at_ns, "dry_run": dry_run,
                  "session": None}
        out: dict[str, Any] = as_writer(self.store_path, "restore", params, direct)
        return out

    def keep_both(self, path: str, data: bytes) -> str:
        """Write ``data`` beside ``path`` under a name no file has, as a batch (``apply``)."""
        import base64

        from guardian.service import Service

        target = beside(path)
        base = os.path.dirname(target)
        manifest = {"operations": [{"op": "write", "path": os.path.basename(target),
                                    "content_base64": base64.b64encode(data).decode()}],
                    "validate": False}

        def direct(writer: Any) -> Any:
            return Service(writer).apply(manifest, base)

        as_writer(self.store_path, "apply", {"manifest": manifest, "base": base}, direct)
        return target

    def ack(self, ids: list[int] | None) -> dict[str, Any]:
        """Acknowledge alerts (all open ones with None), as ``guardian alerts ack`` does."""
        def direct(writer: Any) -> Any:
            with writer.store.transaction():
                return writer.store.ack_alerts(ids)

        out: dict[str, Any] = as_writer(self.store_path, "observe.ack",
                                        {"ids": ids or [], "all": ids is None}, direct)
        return out

    def subscribe(self) -> Subscription | None:
        return subscribe(self.store_path)

    # ----------------------------------------------------------------- agent sessions
    def sessions(self, session: str | None = None) -> list[dict[str, Any]]:
        """``guardian sessions --json`` (with ``session``: that one, with its prompts)."""
        from guardian.agents.sessions import summaries

        out: list[dict[str, Any]] = self.read(lambda s: summaries(s, session))
        return out

    def touched(self, *, session: str | None = None,
                prompt: str | None = None) -> list[Touched]:
        """The files a session or one prompt of it changed, and what it did to each."""
        from guardian.agents.touched import touched

        out: list[Touched] = self.read(lambda s: touched(s, session=session, prompt=prompt))
        return out

    def undo(self, *, session: str | None = None, prompt: str | None = None,
             dry_run: bool = False, force: bool = False) -> dict[str, Any]:
        """``guardian undo --session|--prompt`` (the same request, recorded the same way)."""
        from guardian.agents.undo import request

        return request(self.store_path, {"session": session, "prompt": prompt, "last": None,
                                         "since_ns": None, "dry_run": dry_run, "force": force})


def beside(path: str) -> str:
    """A free name next to ``path`` for "Keep both": ``name (restored).ext``, then 2, 3…"""
    head, ext = os.path.splitext(path)
    if head.endswith("/") or not head.rpartition("/")[2]:
        head, ext = path, ""
    n = 1
    while True:
        candidate = f"{head} (restored{'' if n == 1 else f' {n}'}){ext}"
        if not os.path.lexists(candidate):
            return candidate
        n += 1
