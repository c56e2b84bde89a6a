"""``guardian health``: is Guardian able to do its job right now? Six real checks.

The seed's four (backup, recovery, validation, optimisation) and two of ours (watcher,
store), each answering healthy, degraded or unhealthy with its detail and recommendations:

- **backup**: re-hash a random sample of stored objects (all of them with ``--full``);
- **recovery**: restore a random sample of stored versions into a temporary directory (never
  the watched tree) with the same root-confined atomic write a restore uses, read them back
  and compare their SHA-256 with the recorded one;
- **validation**: every built-in validator on the known-good and known-bad files shipped in
  ``guardian/observe/samples``: each good one must pass, each bad one fail;
- **optimisation**: the seed's criteria over the last 7 days of batch writes: average
  improvement above 10 % against the naive baseline, and optimisation rate above 20 %;
- **watcher**: a daemon answers on the control socket, a sync cookie makes the round trip
  through inotify (its events are being delivered), and the user's inotify watches leave
  headroom below ``/proc/sys/fs/inotify/max_user_watches``;
- **store**: free space on the store's filesystem, the WAL's size, and SQLite's
  ``quick_check`` (on stores up to 512 MiB, or any with ``--full``).

Overall: unhealthy if any check is (exit 3), else degraded if any is (exit 1), else healthy
(exit 0), so ``guardian health`` works as a container ``HEALTHCHECK``. A check that cannot
run is unhealthy, as the seed's monitor has it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guardian.exitcodes import ExitCode

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
SAMPLES_DIR = Path(__file__).with_name("samples")
#: Validator -> the extension its files have (samples are ``good/NAME.sample``: no ``.py``
#: file in the package that does not compile).
SAMPLE_FORMATS = {"python": "py", "json": "json", "yaml": "yaml", "toml": "toml", "ini": "ini",
                  "markdown": "md", "text": "txt"}
QUICK_CHECK_MAX = 512 * 1024 * 1024
FREE_UNHEALTHY = (1024 * 1024, 0.005)     # below 1 MiB or 0.5 %: writes are failing soon
FREE_DEGRADED = (100 * 1024 * 1024, 0.05)  # below 100 MiB or 5 %
WAL_DEGRADED = 128 * 1024 * 1024
WATCH_HEADROOM = 0.10


def _result(status: str, detail: dict[str, Any], recommendations: list[str] | None = None
            ) -> dict[str, Any]:
    return {"status": status, "healthy": status == HEALTHY, "detail": detail,
            "recommendations": recommendations or []}


def run(store_path: Path, *, full: bool = False, sample: int = 50) -> dict[str, Any]:
    from guardian.store.db import Store
    from guardian.timespec import iso

    checks: dict[str, dict[str, Any]] = {}
    store: Store | None = None
    try:
        store = Store.open(store_path, write=False)
    except Exception as e:
        checks["store"] = _result(UNHEALTHY, {"error": str(e)},
                                  ["check the store directory (guardian verify, or restore "
                                   "it from a copy)"])
    todo: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("validation", check_validation),
        ("watcher", lambda: check_watcher(store_path)),
    ]
    if store is not None:
        s = store
        todo = [("backup", lambda: check_backup(s, full=full, sample=sample)),
                ("recovery", lambda: check_recovery(s, sample=max(1, min(sample, 10)))),
                *todo,
                ("optimisation", lambda: check_optimisation(s)),
                ("store", lambda: check_store(s, full=full))]
    try:
        for name, fn in todo:
            try:
                checks[name] = fn()
            except Exception as e:  # a check that cannot run is a failed check
                checks[name] = _result(UNHEALTHY, {"error": f"{type(e).__name__}: {e}"},
                                       [f"the {name} check could not run; see the error"])
    finally:
        if store is not None:
            store.close()
    order = ("backup", "recovery", "validation", "optimisation", "watcher", "store")
    checks = {k: checks[k] for k in order if k in checks}
    overall = max((c["status"] for c in checks.values()), key=_RANK.__getitem__)
    code = {HEALTHY: ExitCode.OK, DEGRADED: ExitCode.DEGRADED,
            UNHEALTHY: ExitCode.UNHEALTHY}[overall]
    return {"overall": overall, "exit_code": int(code), "time": iso(time.time_ns()),
            "store": str(store_path), "full": full, "checks": checks,
            "recommendations": [r for c in checks.values() for r in c["recommendations"]]}


# ----------------------------------------------------------------------------- backup
def check_backup(store: Any, *, full: bool, sample: int) -> dict[str, Any]:
    from guardian.errors import CorruptObjectError
    from guardian.store.objects import Objects
    objects = Objects(store)
    total = store.object_count()
    ids = store.object_ids() if full or total <= sample else store.sample_ids("objects", sample)
    damaged = []
    checked_bytes = 0
    for oid in ids:
        try:
            info = objects.info(oid)
            objects.check(info)
            checked_bytes += info.size
        except CorruptObjectError as e:
            users = store.versions_using(oid)
            damaged.append({"object": oid, "reason": str(e), "versions": users[:20]})
    detail = {"objects": total, "checked": len(ids), "checked_bytes": checked_bytes,
              "sample": not (full or total <= sample), "damaged": damaged}
    if damaged:
        return _result(UNHEALTHY, detail, [
            "Review and repair failed backups: run `guardian verify` for every damaged object "
            "and the versions that use it"])
    return _result(HEALTHY, detail)


# ----------------------------------------------------------------------------- recovery
def check_recovery(store: Any, *, sample: int) -> dict[str, Any]:
    """Restore sampled versions into a temporary directory and compare their hashes."""
    import stat as stat_mod

    from guardian.errors import CorruptObjectError
    from guardian.rootfs import RootFS
    from guardian.store.objects import Objects

    ids = store.sample_ids("versions", sample)
    if not ids:
        return _result(HEALTHY, {"restored": 0, "note": "no stored content yet"})
    objects = Objects(store)
    scratch = tempfile.mkdtemp(prefix="guardian-health-")
    failures = []
    restored = 0
    try:
        fs = RootFS(os.fsencode(scratch))
        for vid in ids:
            v = store.version(vid)
            if v is None or v.object_id is None or v.hash is None:
                continue
            name = f"v{vid}".encode()
            try:
                data = objects.get(v.object_id)
                mode = v.mode or 0o100644
                if stat_mod.S_ISLNK(mode):
                    fs.symlink(name, data)
                    back = os.readlink(os.path.join(os.fsencode(scratch), name))
                else:
                    fs.write(name, data, stat_mod.S_IMODE(mode) | stat_mod.S_IFREG | 0o600)
                    with open(os.path.join(os.fsencode(scratch), name), "rb") as f:
                        back = f.read()
            except (CorruptObjectError, OSError) as e:
                failures.append({"version": vid, "error": str(e)})
                continue
            if hashlib.sha256(back).digest() != v.hash:
                failures.append({"version": vid, "error": "restored bytes do not match the "
                                 f"recorded SHA-256 {v.hash.hex()}"})
            else:
                restored += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    detail = {"sampled": len(ids), "restored": restored, "failed": failures,
              "into": "a temporary directory (removed)"}
    if failures:
        return _result(UNHEALTHY, detail, [
            "some stored versions cannot be restored: run `guardian verify` and keep a copy of "
            "the store before anything else writes to it"])
    return _result(HEALTHY, detail)


# ----------------------------------------------------------------------------- validation
def check_validation() -> dict[str, Any]:
    from guardian.validation import validators

    wrong = []
    ran = 0
    for name, ext in SAMPLE_FORMATS.items():
        for kind in ("good", "bad"):
            data = (SAMPLES_DIR / kind / f"{name}.sample").read_bytes()
            r = validators.run(name, data, str(SAMPLES_DIR / kind / f"sample.{ext}"), {})
            ran += 1
            if r.skipped is not None:
                wrong.append(f"{name}: did not run on the {kind} sample ({r.skipped})")
            elif kind == "good" and not r.ok:
                msg = r.problems[0].message if r.problems else "?"
                wrong.append(f"{name}: refused the known-good sample: {msg}")
            elif kind == "bad" and r.ok:
                wrong.append(f"{name}: accepted the known-bad sample")
    detail = {"validators": list(SAMPLE_FORMATS), "checks": ran, "wrong": wrong}
    if wrong:
        return _result(DEGRADED, detail, [
            "a validator gives wrong verdicts: invalid writes may go unnoticed; reinstall "
            "Guardian or its parsers (pip check)"])
    return _result(HEALTHY, detail)


# ----------------------------------------------------------------------------- optimisation
def check_optimisation(store: Any) -> dict[str, Any]:
    """The seed's criteria: improvement > 10 % and optimisation rate > 20 % (batch writes)."""
    from guardian.observe.metrics import compute

    m = compute(store, since_ns=time.time_ns() - 7 * 86400 * 10**9, sections=frozenset())
    batch = m["types"].get("batch")
    if not batch or not batch["count"]:
        return _result(HEALTHY, {"operations": 0, "note": "no batch writes in the last 7 days "
                                 "to judge"})
    improvement = batch["improvement"]
    rate = batch["optimisation_usage_rate"] or 0.0
    detail = {"operations": batch["count"], "average_improvement_percent":
              None if improvement is None else round(improvement * 100, 2),
              "optimisation_rate": rate, "baseline": m["time_saved"]["baseline"],
              "criteria": {"average_improvement_percent": "> 10", "optimisation_rate": "> 0.2"}}
    recs = []
    if improvement is not None and improvement * 100 <= 10:
        recs.append("Review optimization strategies for better performance gains")
    if rate <= 0.2:
        recs.append("Investigate why optimization rate is low")
    if improvement is None:
        detail["note"] = "no baseline measured yet: improvement not judged"
    return _result(DEGRADED if recs else HEALTHY, detail, recs)


# ----------------------------------------------------------------------------- watcher
def inotify_watches() -> dict[str, Any]:
    """The per-user inotify watch limit, and how many this user's processes hold."""
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip())
    except (OSError, ValueError):
        return {"available": False}
    uid = os.getuid()
    used = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                used += sum(1 for line in f if line.startswith(b"inotify wd:"))
    return {"available": True, "max_user_watches": limit, "in_use": used,
            "headroom": round(1 - used / limit, 6) if limit else 0.0}


def check_watcher(store_path: Path) -> dict[str, Any]:
    from guardian.client import daemon

    watches = inotify_watches()
    detail: dict[str, Any] = {"inotify": watches}
    conn = daemon(store_path, timeout=3)
    if conn is None:
        detail["running"] = False
        return _result(UNHEALTHY, detail, [
            "no daemon is watching this store: changes are not being recorded; start "
            "`guardian watch` (or its service)"])
    detail["running"] = True
    with conn:
        try:
            ping = conn.call("ping")
            detail["pid"] = ping.get("pid")
            t0 = time.monotonic()
            sync = conn.call("observe.sync", {"timeout": 5})
            detail["sync_cookie"] = {"ok": bool(sync.get("ok")), "ms": sync.get("ms"),
                                     "round_trip_ms": round((time.monotonic() - t0) * 1000, 3)}
            detail["ready"] = bool(sync.get("ready"))
            detail["degraded"] = bool(sync.get("degraded"))
        except (OSError, ValueError, ConnectionError) as e:
            detail["error"] = f"the daemon does not answer: {e}"
            return _result(UNHEALTHY, detail, [
                "the daemon holds the control socket but does not answer (stopped, or hung): "
                "restart `guardian watch`"])
        except Exception as e:
            detail["error"] = str(e)
            return _result(UNHEALTHY, detail, ["the daemon could not run the check: " + str(e)])
    recs = []
    status = HEALTHY
    if not detail["sync_cookie"]["ok"]:
        status = UNHEALTHY if detail["ready"] else DEGRADED
        recs.append("a sync cookie written in each root did not come back through inotify: "
                    "the watcher is not delivering events; restart `guardian watch`"
                    if detail["ready"] else "the daemon is still taking its baseline")
    elif not detail["ready"]:
        status = DEGRADED
        recs.append("the daemon is still taking its baseline")
    if detail["degraded"]:
        status = max(status, DEGRADED, key=_RANK.__getitem__)
        recs.append("the daemon is degraded (watch limit reached or capture failing): see "
                    "`guardian status`")
    if watches.get("available") and watches["headroom"] < WATCH_HEADROOM:
        status = max(status, DEGRADED, key=_RANK.__getitem__)
        recs.append(f"inotify watches {watches['in_use']} of {watches['max_user_watches']} in "
                    "use: raise the limit with `sysctl fs.inotify.max_user_watches=524288`")
    return _result(status, detail, recs)


# ----------------------------------------------------------------------------- store
def check_store(store: Any, *, full: bool) -> dict[str, Any]:
    path = Path(store.path)
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    size = st.f_blocks * st.f_frsize
    share = free / size if size else 0.0
    try:
        wal = os.stat(path / "guardian.db-wal").st_size
    except OSError:
        wal = 0
    db = os.stat(path / "guardian.db").st_size
    detail: dict[str, Any] = {"free_bytes": free, "filesystem_bytes": size,
                              "free_share": round(share, 6), "wal_bytes": wal, "db_bytes": db}
    status = HEALTHY
    recs = []
    if free < FREE_UNHEALTHY[0] or share < FREE_UNHEALTHY[1]:
        status = UNHEALTHY
        recs.append(f"the store's filesystem is full ({free:,} bytes free): new versions "
                    "cannot be recorded; free space (or `guardian gc`)")
    elif free < FREE_DEGRADED[0] or share < FREE_DEGRADED[1]:
        status = DEGRADED
        recs.append(f"the store's filesystem is nearly full ({free:,} bytes, "
                    f"{share:.1%} free): free space or run `guardian gc`")
    if wal > WAL_DEGRADED:
        status = max(status, DEGRADED, key=_RANK.__getitem__)
        recs.append(f"the WAL is {wal:,} bytes: checkpoints are not keeping up (a reader "
                    "holding an old snapshot?)")
    if full or db + wal <= QUICK_CHECK_MAX:
        msg = "; ".join(store.quick_check())[:500]
        detail["integrity"] = msg
        if msg != "ok":
            status = UNHEALTHY
            recs.append("SQLite's quick_check failed: run `guardian verify`, keep a copy of "
                        "the store before anything writes to it")
    else:
        detail["integrity"] = "not checked (a large store: use --full)"
    return _result(status, detail, recs)


def _describe(name: str, d: dict[str, Any]) -> str:
    if "error" in d and name != "watcher":
        return str(d["error"])
    if name == "backup":
        return (f"{d.get('checked', 0)} of {d.get('objects', 0)} objects verified, "
                f"{len(d.get('damaged', []))} damaged")
    if name == "recovery":
        return (f"{d.get('restored', 0)} of {d.get('sampled', 0)} sampled versions restored "
                "and matched" + (f", {len(d['failed'])} failed" if d.get("failed") else ""))
    if name == "validation":
        return f"{d.get('checks', 0)} sample verdicts, {len(d.get('wrong', []))} wrong"
    if name == "optimisation":
        return str(d.get("note") or (
            f"{d.get('operations')} batch operations, improvement "
            f"{d.get('average_improvement_percent')}%, rate {d.get('optimisation_rate')}"))
    if name == "watcher":
        if not d.get("running"):
            text = "not running"
        elif "error" in d:
            text = str(d["error"])
        else:
            cookie = d["sync_cookie"]
            text = (f"pid {d.get('pid')}, sync cookie {'ok' if cookie['ok'] else 'LOST'} in "
                    f"{cookie['round_trip_ms']} ms")
        ino = d.get("inotify", {})
        if ino.get("available"):
            text += f"; inotify {ino['in_use']}/{ino['max_user_watches']} watches"
        return text
    if name == "store":
        return (f"{d.get('free_bytes', 0):,} bytes free ({d.get('free_share', 0):.1%}), WAL "
                f"{d.get('wal_bytes', 0):,} bytes, integrity {d.get('integrity')}")
    return ""


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['overall']} ({result['store']})"]
    for name, c in result["checks"].items():
        lines.append(f"  {name:<13} {c['status']:<10} {_describe(name, c['detail'])}")
    for r in result["recommendations"]:
        lines.append(f"  - {r}")
    return "\n".join(lines)
