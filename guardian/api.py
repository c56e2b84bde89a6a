"""The batch writer's front door: the async Python API, and the code ``guardian apply`` shares.

::

    from guardian.api import Batch

    result = await (Batch("project")
                    .write("a.txt", "text")
                    .edit("c.py", "x = 1", "x = 2")
                    .render("f.txt", "Hello $name", vars={"name": "x"})
                    .delete("e.txt")
                    .commit())

``commit()`` applies every operation or none (see :mod:`guardian.batch.protocol`) and returns an
:class:`Applied`; any failure raises :class:`~guardian.errors.BatchError` naming the
operation and the path, after rolling everything back. It goes through the daemon when one
runs (so its watcher records the versions with origin ``batch``), else takes the store itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardian.batch.manifest import Manifest, Operation
from guardian.errors import GuardianError
from guardian.exitcodes import ExitCode


@dataclass(frozen=True)
class Applied:
    """What a committed batch did: the ``guardian apply --json`` result, typed."""

    batch_id: int | None
    files: list[dict[str, Any]]
    duration_ms: float
    optimisations: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    diff: str = ""
    #: Imports the batch breaks that a rule downgraded to a warning (guardian.batch.imports).
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Applied:
        return cls(d.get("batch"), list(d.get("files", [])), float(d.get("duration_ms", 0)),
                   dict(d.get("optimisations", {})), bool(d.get("dry_run")), d.get("diff", ""),
                   list(d.get("warnings", [])))


def apply(manifest: Manifest, base: Path, *, store: Path | None = None, dry_run: bool = False,
          session: str | None = None, template_dir: str | None = None,
          one_shot: bool = False) -> dict[str, Any]:
    """Apply a manifest (blocking): through the daemon if one runs, else directly.
    ``template_dir``: the manifest file's directory (template_path may point there).
    ``one_shot``: the caller's process ends with ``os._exit`` once this returns (``guardian
    apply``): the store is left for it, not closed (see ``client.as_writer``)."""
    from guardian.client import as_writer
    from guardian.errors import BatchError, DaemonError
    from guardian.locations import find_store_for, read_store_roots, store_dir_for_roots

    base = Path(os.path.abspath(base))
    store_path = store or find_store_for(base) or store_dir_for_roots([base])
    new_roots = [] if read_store_roots(store_path) else [base]
    template_dir = os.path.abspath(template_dir) if template_dir else None
    made: list[dict[str, Any]] = []

    def params() -> dict[str, Any]:
        """The request to a daemon (made only if one answers: applied here, the manifest is
        used as it is)."""
        if not made:
            wire = {"operations": [op.to_json() for op in manifest.operations],
                    "validate": manifest.validate, "lock_timeout": manifest.lock_timeout,
                    "session": manifest.session}
            made.append({"manifest": wire, "base": os.fsdecode(base), "dry_run": dry_run,
                         "session": session, "template_dir": template_dir})
        return made[0]

    _check_request_size(store_path, manifest, params)

    def direct(writer: Any) -> Any:
        from guardian.batch import recovery
        from guardian.service import Service

        recovery.recover(writer)  # a batch a crash interrupted comes first
        return Service(writer).apply_manifest(manifest, os.fsdecode(base), dry_run=dry_run,
                                              session=session, template_dir=template_dir)

    try:
        if dry_run and not (store_path / "guardian.db").is_file():
            # A dry run creates nothing: with no store yet it runs on a scratch one (and
            # refuses a directory the real run would refuse).
            import tempfile

            from guardian.store.db import check_new_store_dir

            check_new_store_dir(store_path)

            with tempfile.TemporaryDirectory(prefix="guardian-dry-run-") as scratch:
                return dict(as_writer(Path(scratch) / "store", "apply", params, direct,
                                      create=True, roots=new_roots))
        out: dict[str, Any] = as_writer(store_path, "apply", params, direct,
                                        create=not dry_run, roots=new_roots,
                                        leave=one_shot and not dry_run)
    except DaemonError as e:
        if e.data:  # a refused or failed batch: the same error as without a daemon
            err = BatchError.from_json(e.data)
            err.exit_code = e.exit_code
            raise err from None
        raise
    except ConnectionError:
        # The daemon went away between our request and its answer (killed, crashed): the
        # batch may have reached its commit point, so only its journal knows how it ended.
        raise BatchError("the daemon stopped while applying the batch; it may have been "
                         "committed or not: run `guardian recover` to finish or undo it",
                         category="recovery") from None
    return out


def _check_request_size(store_path: Path, manifest: Manifest,
                        make: Callable[[], dict[str, Any]]) -> None:
    """Refuse, before sending it, a request the daemon would not read (its line limit):
    the daemon would drop the connection, which looks like a daemon that died. With no
    daemon the batch is applied in this process, with no limit: nothing is encoded."""
    from guardian import control
    from guardian.client import daemon

    # JSON escapes at most sextuple a character (\u0000); base64 is 4/3 of its bytes.
    bound = sum(64 + 6 * sum(len(v) for v in (op.path, op.content, op.old, op.new, op.patch,
                                              op.template, op.template_path) if v)
                + (len(json.dumps(op.vars)) if op.vars else 0) for op in manifest.operations)
    if bound <= control.MAX_LINE:
        return
    conn = daemon(store_path, timeout=10)
    if conn is None:
        return  # applied in this process: no line limit
    conn.close()
    size = len(control.encode(make()))
    if size <= control.MAX_LINE:
        return
    raise GuardianError(f"the batch is {size / 2**20:.1f} MiB as a request, more than the "
                        f"daemon takes ({control.MAX_LINE // 2**20} MiB); split it into "
                        "smaller batches", exit_code=ExitCode.USAGE)


class Batch:
    """Operations collected in memory, applied all or nothing by :meth:`commit`."""

    def __init__(self, root: str | os.PathLike[str] = ".", *, store: str | None = None,
                 validate: bool = True, lock_timeout: float = 5.0,
                 session: str | None = None) -> None:
        self.root = Path(root)
        self.store = Path(store) if store else None
        self.validate = validate
        self.lock_timeout = lock_timeout
        self.session = session
        self.operations: list[Operation] = []
        #: A loaded manifest's directory: its template_path may point there too.
        self.template_dir: str | None = None

    def _add(self, op: str, path: str, **kw: Any) -> Batch:
        self.operations.append(Operation(len(self.operations) + 1, op, str(path), **kw))
        return self

    def write(self, path: str, content: str | bytes, *, mode: int | None = None) -> Batch:
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        return self._add("write", path, content=data, mode=mode)

    def edit(self, path: str, old: str | None = None, new: str | None = None, *,
             patch: str | None = None) -> Batch:
        """Replace the one occurrence of ``old`` by ``new``, or apply a unified diff."""
        if (patch is None) == (old is None or new is None):
            raise GuardianError("edit needs old and new, or a patch", exit_code=ExitCode.USAGE)
        return self._add("edit", path, old=old, new=new, patch=patch)

    def delete(self, path: str) -> Batch:
        return self._add("delete", path)

    def render(self, path: str, template: str | None = None, *,
               template_path: str | None = None, vars: Mapping[str, Any] | None = None,
               mode: int | None = None) -> Batch:
        if (template is None) == (template_path is None):
            raise GuardianError("render needs a template or a template_path",
                                exit_code=ExitCode.USAGE)
        return self._add("render", path, template=template, template_path=template_path,
                         vars=dict(vars or {}), mode=mode)

    def mkdir(self, path: str) -> Batch:
        return self._add("mkdir", path)

    @classmethod
    async def load(cls, manifest: str | os.PathLike[str], root: str | os.PathLike[str] = ".",
                   **kw: Any) -> Batch:
        """A batch from a JSON, TOML or YAML manifest file (read without blocking the loop;
        at most ``MAX_MANIFEST_BYTES``)."""
        import aiofiles

        from guardian.batch import manifest as mf

        async with aiofiles.open(manifest, "rb") as f:
            m = mf.load(await f.read(mf.MAX_MANIFEST_BYTES + 1), str(manifest))
        b = cls(root, validate=m.validate, lock_timeout=m.lock_timeout, session=m.session, **kw)
        b.operations = m.operations
        b.template_dir = os.path.dirname(os.path.abspath(manifest))
        return b

    async def commit(self, *, dry_run: bool = False) -> Applied:
        """Apply every operation or none; raise BatchError (rolled back) on any failure."""
        import anyio

        if not self.operations:
            raise GuardianError("nothing to commit", exit_code=ExitCode.USAGE)
        manifest = Manifest(list(self.operations), self.validate, self.lock_timeout,
                            self.session)
        out = await anyio.to_thread.run_sync(
            lambda: apply(manifest, self.root, store=self.store, dry_run=dry_run,
                          session=self.session, template_dir=self.template_dir))
        return Applied.from_json(out)
