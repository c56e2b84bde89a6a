"""Group "tui": the Textual app's first paint on a big store, and keys during a burst.

``tui.paint``: a store with 100,000 files and 1,000,000 versions (built in process with the
store's bulk inserts: this measures the app, not capture), opened as a user does (a fresh
process, ``make_app(store)``, 160x50, headless): time from the process's start to the first
frame, to the dashboard showing the store's figures, and to the restore browser showing
its tree (lazy: the top directories, with their counts). Baseline: a minimal Textual app
(Header, Static, Footer) started the same way, in the same run: Python's and Textual's own
start-up.

``tui.keys``: the app attached to a real daemon while 20,000 files are written; ``space``
(pause) is pressed every 50 ms and the time until the dashboard has acted on it is taken.
Baseline: the same presses with the daemon idle, in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    Config,
    Goal,
    Row,
    Table,
    Workspace,
    guardian_watch,
    is_ready,
    median,
    percentile,
    progress,
)

FILES = 100_000
VERSIONS = 1_000_000
PRESS_EVERY_S = 0.05

_CHILD = r"""
import asyncio, json, sys, time
kind, store = sys.argv[1], sys.argv[2]
from pathlib import Path
if kind == "tui":
    from tui.app import make_app
    app = make_app(Path(store))
else:
    from textual.app import App
    from textual.widgets import Footer, Header, Static
    class Base(App):
        def compose(self):
            yield Header()
            yield Static("hello")
            yield Footer()
    app = Base()
out = {}
async def main():
    async with app.run_test(size=(160, 50)) as pilot:
        out["paint"] = time.time()
        if kind == "tui":
            while app.stats_seq == 0:
                await pilot.pause(0.005)
            out["data"] = time.time()
            await pilot.press("3")
            screen = app.screen
            while not getattr(screen, "tree_ready", False):
                await pilot.pause(0.005)
            out["tree"] = time.time()
asyncio.run(main())
print(json.dumps(out))
"""


def build_store(path: Path, files: int, versions: int) -> None:
    """``files`` files with ``versions`` versions in all, through the store's bulk inserts."""
    from guardian.store.db import NewVersion, Store
    from guardian.store.objects import Objects

    st = os.stat(__file__)
    now = time.time_ns()
    rels = [f"d{i // 1000:03}/s{(i // 50) % 20:02}/file{i:06}.txt".encode()
            for i in range(files)]
    rounds = max(1, versions // files)
    with Store.open(path, write=True, create=True) as s:
        [root] = s.add_roots([path.parent / "root"])
        with s.transaction(durable=False):
            oids = [Objects(s).put(f"content {k}\n".encode() * (k + 1)) for k in range(16)]
        t0 = now - rounds * 3600 * 10**9
        with s.transaction(durable=False):
            s.add_new_files([(root.id, rel, NewVersion(0, oids[0], True, "baseline", "scan",
                                                       0o100644, 10), st) for rel in rels],
                            t0)
        for r in range(1, rounds):
            for lo in range(0, files, 20_000):
                part = rels[lo:lo + 20_000]
                kind = "deleted" if r == rounds - 1 and lo == 0 else "modified"
                items = [(root.id, rel, NewVersion(0, None if kind == "deleted" else
                                                   oids[(r + i) % 16], kind != "deleted",
                                                   kind, "watcher", 0o100644, 10), st)
                         for i, rel in enumerate(part)]
                with s.transaction(durable=False):
                    s.add_versions(items, t0 + r * 3600 * 10**9 + lo)
            progress(f"tui.paint: {(r + 1) * files:,} versions")
        s.checkpoint()


_BURST = r"""
import sys
from pathlib import Path
root, n = Path(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    d = root / f"b{i // 1000:02}"
    if i % 1000 == 0:
        d.mkdir(exist_ok=True)
    (d / f"f{i:05}.txt").write_bytes(b"burst %d\n" % i)
"""


def _paint(kind: str, store: Path, env: dict[str, str]) -> dict[str, float]:
    t = time.time()
    p = subprocess.run([sys.executable, "-c", _CHILD, kind, str(store)], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{kind} app failed: {p.stderr[-500:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return {k: v - t for k, v in out.items()}


def paint(ws: Workspace, cfg: Config) -> Table:
    files = 10_000 if cfg.quick else FILES
    versions = 100_000 if cfg.quick else VERSIONS
    store = ws.dir("paint") / "store"
    t = time.perf_counter()
    build_store(store, files, versions)
    built = time.perf_counter() - t
    env = ws.env()
    base, tui = [], []
    for _ in range(cfg.repeats if not cfg.quick else 2):
        base.append(_paint("base", store, env))
        tui.append(_paint("tui", store, env))
    b = median([x["paint"] for x in base])
    table = Table("tui.paint", f"first paint on a store of {files:,} files, "
                  f"{versions:,} versions (160x50, median of {len(tui)})",
                  "a minimal Textual app started the same way, same run")
    table.rows += [
        Row("first paint (dashboard frame)", median([x["paint"] for x in tui]), "s", b,
            Goal("<=", 1.0)),
        Row("dashboard showing the store's figures", median([x["data"] for x in tui]), "s", b),
        Row("restore browser showing its tree", median([x["tree"] for x in tui]), "s", b),
    ]
    table.notes.append(f"store built with bulk inserts in {built:.1f} s (not measured)")
    table.notes.append(f"load average at the end: {os.getloadavg()[0]:.1f} "
                       f"on {os.cpu_count()} CPUs")
    return table


async def _presses(app: object, screen: object, n: int) -> list[float]:
    """``space`` sent as a terminal sends it (the driver's queue, as the key reader does),
    then the time until the dashboard's action has run. Not ``pilot.press``: it waits for
    the whole process to go idle (``wait_for_idle``) and ``pilot.pause`` forces a full
    repaint, which a real key does neither of, and during a burst the process is never idle."""
    from textual import events

    driver = app._driver  # type: ignore[attr-defined]
    out: list[float] = []
    for _ in range(n):
        before = screen.paused  # type: ignore[attr-defined]
        t = time.perf_counter()
        key = events.Key("space", " ")
        key.set_sender(app)  # type: ignore[arg-type]
        driver.send_message(key)
        while screen.paused == before:  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)
        out.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(PRESS_EVERY_S)
    return out


async def _loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    """How late a 10 ms timer on the app's event loop fires: the longest a key could wait
    behind a render or a message handler, whatever key it is."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        out.append((time.perf_counter() - t - 0.01) * 1000)


def keys(ws: Workspace, cfg: Config) -> Table:
    n = cfg.burst_large
    root = ws.dir("keys", "root")
    store = ws.root / "keys" / "store"
    env = ws.env()
    for k in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        os.environ[k] = env[k]
    os.environ["TEXTUAL_ANIMATIONS"] = "none"
    from tui.app import make_app
    from tui.screens.dashboard import Dashboard

    result: dict[str, object] = {}
    with guardian_watch(root, store, env) as daemon:
        daemon.wait_for(is_ready, 120, "ready")

        async def main() -> None:
            app = make_app(store)
            async with app.run_test(size=(160, 50)) as pilot:
                while not isinstance(app.screen, Dashboard) or app.stats_seq == 0:
                    await pilot.pause(0.01)
                screen = app.screen
                lag_stop, idle_lag, busy_lag = asyncio.Event(), [], []  # type: ignore[var-annotated]
                lagger = asyncio.create_task(_loop_lag(lag_stop, idle_lag))
                result["idle"] = await _presses(app, screen, 40)
                lag_stop.set()
                await lagger
                lag_stop.clear()
                lagger = asyncio.create_task(_loop_lag(lag_stop, busy_lag))
                # The burst comes from another process, as a build's or an agent's does:
                # a writer thread here would hold this process's GIL, which no user's does.
                start = app.feed.versions
                t0 = time.perf_counter()
                writer = subprocess.Popen([sys.executable, "-c", _BURST, str(root), str(n)])
                busy: list[float] = []
                deadline = time.monotonic() + 300
                while app.feed.versions - start < n and time.monotonic() < deadline:
                    busy += await _presses(app, screen, 5)
                writer.wait(timeout=300)
                lag_stop.set()
                await lagger
                result["idle_lag"], result["busy_lag"] = idle_lag, busy_lag
                result["busy"] = busy
                result["received"] = app.feed.versions - start
                result["resumed"] = app.feed.resumed
                result["burst_s"] = time.perf_counter() - t0

        asyncio.run(main())
    idle, busy = list(result["idle"]), list(result["busy"])  # type: ignore[call-overload]
    idle_lag = list(result["idle_lag"])  # type: ignore[call-overload]
    busy_lag = list(result["busy_lag"])  # type: ignore[call-overload]
    table = Table("tui.keys", f"keypress latency while a {n:,}-file burst arrives "
                  "(dashboard, attached)", "the same key with the daemon idle, same run")
    table.rows += [
        Row("key -> acted on, p50", median(busy), "ms", median(idle)),
        Row("key -> acted on, p95", percentile(busy, 95), "ms", percentile(idle, 95),
            Goal("<=", 100.0)),
        Row("key -> acted on, max", max(busy) if busy else None, "ms", max(idle)),
        Row("event-loop lag (10 ms timer), p99", percentile(busy_lag, 99), "ms",
            percentile(idle_lag, 99), Goal("<=", 100.0)),
        Row("event-loop lag, max", max(busy_lag) if busy_lag else None, "ms",
            max(idle_lag) if idle_lag else None),
        Row("version events received", float(result["received"]), "", float(n),  # type: ignore[arg-type]
            Goal(">=", 1.0, on="ratio")),
    ]
    table.notes.append(f"{len(busy)} presses during the burst; the burst took "
                       f"{result['burst_s']:.1f} s to arrive; load average "
                       f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if result.get("resumed"):
        table.notes.append(f"the daemon dropped the app's event feed {result['resumed']} "
                           "time(s) for falling behind; it subscribed again (events skipped)")
    return table


BENCHMARKS = {"tui.paint": paint, "tui.keys": keys}
