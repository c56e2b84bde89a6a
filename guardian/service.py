"""Requests that need the store's writer: the same code whether the daemon or the CLI holds it.

When a daemon runs, ``guardian snapshot``/``restore``/``gc`` send these over the control socket
and the daemon runs them in its store thread (so its watcher sees the result as already
recorded); when none runs, the CLI takes the writer lock and calls them directly.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from guardian.capture.recorder import CaptureResult
from guardian.errors import UsageError
from guardian.observe.record import recorded
from guardian.paths import Root, absolute, locate, under

if TYPE_CHECKING:
    from guardian.batch.manifest import Manifest
    from guardian.writer import Writer
from guardian.store import retention

#: How long before a snapshot a watcher's version may be, to take the snapshot's session
#: (a hook's snapshot follows the write it reports by well under a second; see
#: :meth:`Service.label_recent`).
LABEL_WINDOW_S = 5.0


def summary(res: CaptureResult, roots: dict[int, Root], method: str = "scan") -> dict[str, Any]:
    versions: list[dict[str, Any]] = []
    if res.recorded:  # guardian.events is not imported by a re-scan that found nothing
        from guardian.events import VersionRecorded

        versions = [VersionRecorded.of(r, roots).to_dict() for r in res.recorded]
    return {
        "method": method,
        "recorded": len(res.recorded),
        "unchanged": res.unchanged,
        "scanned": res.scanned,
        "versions": versions,
        "warnings": [{"path": roots[w.root_id].display(w.relpath), "message": w.message}
                     for w in res.warnings],
    }


class Service:
    """The writer requests of one :class:`~guardian.writer.Writer`."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.recorder = writer.recorder
        self.settings = writer.settings

    @property
    def roots(self) -> dict[int, Root]:
        return self.recorder.roots

    @recorded("snapshot")
    def snapshot(self, paths: list[str], *, session: str | None = None,
                 progress: Any = None) -> dict[str, Any]:
        """Record the current state of files or trees (default: every root), durably.

        A path that does not exist is fine if something was recorded there (its deletion is
        recorded); one that never held anything is a usage error, before anything is done.
        With ``session``, see :meth:`label_recent`.
        """
        rec = self.recorder
        total = CaptureResult()
        targets = [locate(p, list(self.roots.values())) for p in paths] if paths else [
            (r, b"") for r in self.roots.values()]
        kinds: list[bool] = []
        for (root, rel), p in zip(targets, paths or [""] * len(targets), strict=True):
            try:
                st = os.lstat(root.join(rel))
                kinds.append(stat.S_ISDIR(st.st_mode))
            except OSError:
                if not rec.store.has_history(root.id, rel):
                    raise UsageError(f"{p}: no such file or directory, and nothing was ever "
                                     "recorded there") from None
                # A file that was recorded, or a directory whose files were: gone now.
                kinds.append(rec.store.file_id(root.id, rel, create=False) is None)
        files: list[tuple[int, bytes]] = []
        for (root, rel), is_dir in zip(targets, kinds, strict=True):
            if is_dir:
                total.merge(rec.reconcile(root.id, rel, origin="snapshot", confirm_missing=True,
                                          session=session, progress=progress))
            else:
                files.append((root.id, rel))
        if files:
            res = rec.capture(files, origin="snapshot", confirm_missing=True, session=session)
            res.scanned += len(files)
            total.merge(res)
        out = summary(total, self.roots)
        if session:
            out["labelled"] = self.label_recent(paths, session)
        return out

    def label_recent(self, paths: list[str], session: str) -> list[dict[str, Any]]:
        """Give ``session`` to the versions the watcher recorded a moment before this snapshot.

        With a daemon running, the watcher often records a change before the snapshot that
        names it arrives, so the snapshot finds it unchanged and its label would be lost. The
        newest version of each path named (or under a directory named; every root if none) is
        labelled when the watcher recorded it, with no session, at most ``LABEL_WINDOW_S``
        ago: the version this snapshot would have recorded itself. Older versions, versions
        with a session, and versions that are no longer the newest are never relabelled.
        """
        import time

        store = self.recorder.store
        targets = [locate(p, list(self.roots.values())) for p in paths] if paths else [
            (r, b"") for r in self.roots.values()]
        since = time.time_ns() - int(LABEL_WINDOW_S * 1e9)
        hits = [v for v in store.recent_unlabelled_heads(since, "watcher")
                if any(v.root_id == r.id and under(v.relpath, rel) for r, rel in targets)]
        if not hits:
            return []
        with store.transaction():
            store.set_session([v.id for v in hits], session)
        return [{"id": v.id, "path": self.roots[v.root_id].display(v.relpath)} for v in hits
                if v.root_id in self.roots]

    @recorded("restore")
    def restore(self, path: str, *, version: int | None, at_ns: int | None, dry_run: bool,
                session: str | None = None) -> dict[str, Any]:
        from guardian.batch.restore import restore  # the batch engine: not on snapshot's path

        root, rel = locate(path, list(self.roots.values()))
        res = restore(self.writer, root, rel, version=version, at_ns=at_ns, dry_run=dry_run,
                      session=session)
        return res.to_json()

    def apply(self, manifest: dict[str, Any], base: str, *, dry_run: bool = False,
              session: str | None = None, template_dir: str | None = None) -> dict[str, Any]:
        """Run a batch (see guardian.batch.protocol); a refused batch raises BatchError.
        ``template_dir``: the manifest file's directory, where its template_path may point
        besides the watched roots."""
        from guardian.batch import manifest as manifest_mod

        return self.apply_manifest(manifest_mod.from_dict(manifest), base, dry_run=dry_run,
                                   session=session, template_dir=template_dir)

    def apply_manifest(self, m: Manifest, base: str, *, dry_run: bool = False,
                       session: str | None = None, template_dir: str | None = None
                       ) -> dict[str, Any]:
        """:meth:`apply` of a manifest already parsed (the CLI's own, with no daemon: a
        16 MB manifest is not turned into its wire form and parsed again)."""
        import time
        from pathlib import Path

        from guardian.batch import protocol as journal

        m.template_dirs = tuple(str(r.path) for r in self.roots.values()) + (
            (template_dir,) if isinstance(template_dir, str) and os.path.isabs(template_dir)
            else ())  # as given: batchplan.read_template matches it resolved, too
        t0 = time.perf_counter_ns()
        try:
            return journal.execute(self.writer, m, Path(base), dry_run=dry_run,
                                   session=session).to_json()
        except journal.BatchError as e:
            journal.record_failure(self.recorder.store, m, e, time.perf_counter_ns() - t0)
            raise

    def recover(self, *, sweep: bool = False) -> dict[str, Any]:
        from guardian.batch import recovery

        done = recovery.recover(self.writer)
        swept = sum(recovery.sweep_temps(r) for r in self.roots.values()) if sweep else 0
        return {"batches": [d.to_json() for d in done], "temps_removed": swept}

    def gc(self, *, dry_run: bool, keep_versions: int | None = None,
           keep_days: float | None = None) -> dict[str, Any]:
        """Retention as each file's rules say, unless the caller overrides it for all."""
        s = self.settings
        policy = self.recorder.policy
        override = keep_versions is not None or keep_days is not None

        def per_file(root_id: int, relpath: bytes) -> tuple[int, float]:
            assert policy is not None
            eff = policy.effective(root_id, relpath)
            return (int(eff.get("keep_versions", s.keep_versions)),
                    float(eff.get("keep_days", s.keep_days)))

        return retention.gc(
            self.recorder.store,
            keep_versions=s.keep_versions if keep_versions is None else keep_versions,
            keep_days=s.keep_days if keep_days is None else keep_days, dry_run=dry_run,
            per_file=None if override or policy is None else per_file).to_json()


def check_inside(paths: list[str], roots: list[Root]) -> list[str]:
    """Absolute forms of ``paths``, each checked to be inside a root (one-line errors)."""
    if not roots:
        raise UsageError("the store has no roots")
    out = []
    for p in paths:
        locate(p, roots)
        out.append(os.fsdecode(absolute(p)))
    return out
