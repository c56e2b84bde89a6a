"""Requests that need the store's writer: the same code whether the daemon or the CLI holds it.

When a daemon runs, ``guardian snapshot``/``restore``/``gc`` send these over the control socket
and the daemon runs them in its store thread (so its watcher sees the result as already
recorded); when none runs, the CLI takes the writer lock and calls them directly.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from guardian import retention
from guardian.capture import CaptureResult, Recorded, Recorder
from guardian.errors import UsageError
from guardian.events import VersionRecorded
from guardian.observe.record import recorded
from guardian.paths import Root, absolute, locate
from guardian.restore import restore
from guardian.settings import Settings


def version_event(r: Recorded, roots: dict[int, Root]) -> VersionRecorded:
    return VersionRecorded(id=r.version_id, path=roots[r.root_id].display(r.relpath), kind=r.kind,
                           origin=r.origin, sha256=r.sha256, size=r.size, note=r.note)


def summary(res: CaptureResult, roots: dict[int, Root], method: str = "scan") -> dict[str, Any]:
    return {
        "method": method,
        "recorded": len(res.recorded),
        "unchanged": res.unchanged,
        "scanned": res.scanned,
        "versions": [version_event(r, roots).to_dict() for r in res.recorded],
        "warnings": [{"path": roots[w.root_id].display(w.relpath), "message": w.message}
                     for w in res.warnings],
    }


class Service:
    def __init__(self, recorder: Recorder, settings: Settings) -> None:
        self.recorder = recorder
        self.settings = settings

    @property
    def roots(self) -> dict[int, Root]:
        return self.recorder.roots

    @recorded("snapshot")
    def snapshot(self, paths: list[str], *, session: str | None = None,
                 progress: Any = None) -> dict[str, Any]:
        """Record the current state of files or trees (default: every root), durably."""
        rec = self.recorder
        total = CaptureResult()
        targets = [locate(p, list(self.roots.values())) for p in paths] if paths else [
            (r, b"") for r in self.roots.values()]
        files: list[tuple[int, bytes]] = []
        for root, rel in targets:
            try:
                st = os.lstat(root.join(rel))
                is_dir = stat.S_ISDIR(st.st_mode)
            except OSError:
                is_dir = False
            if is_dir:
                total.merge(rec.reconcile(root.id, rel, origin="snapshot", confirm_missing=True,
                                          session=session, progress=progress))
            else:
                files.append((root.id, rel))
        if files:
            res = rec.capture(files, origin="snapshot", confirm_missing=True, session=session)
            res.scanned += len(files)
            total.merge(res)
        return summary(total, self.roots)

    @recorded("restore")
    def restore(self, path: str, *, version: int | None, at_ns: int | None, dry_run: bool,
                session: str | None = None) -> dict[str, Any]:
        root, rel = locate(path, list(self.roots.values()))
        res = restore(self.recorder, root, rel, version=version, at_ns=at_ns, dry_run=dry_run,
                      session=session)
        return res.to_json()

    def apply(self, manifest: dict[str, Any], base: str, *, dry_run: bool = False,
              session: str | None = None) -> dict[str, Any]:
        """Run a batch (see guardian.journal); a refused batch raises BatchError."""
        import time
        from pathlib import Path

        from guardian import journal
        from guardian import manifest as manifest_mod

        m = manifest_mod.from_dict(manifest)
        t0 = time.perf_counter_ns()
        try:
            return journal.execute(self.recorder, m, Path(base), dry_run=dry_run,
                                   session=session).to_json()
        except journal.BatchError as e:
            journal.record_failure(self.recorder.store, m, e, time.perf_counter_ns() - t0)
            raise

    def recover(self, *, sweep: bool = False) -> dict[str, Any]:
        from guardian import journal

        done = journal.recover(self.recorder)
        swept = sum(journal.sweep_temps(r) for r in self.roots.values()) if sweep else 0
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
