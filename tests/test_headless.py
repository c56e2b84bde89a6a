"""``guardian watch --headless`` as a container runs it: no TTY, no stdin, HOME and XDG
directories empty, the store from $GUARDIAN_STORE (a volume); JSON lines on stderr, a clean
stop on SIGTERM, and nothing written outside the store and the watched tree but the
documented control-socket directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from .conftest import Watch
from .scratch import Scratch, box, no_stdin

__all__ = ["box"]  # the fixture, imported to be found


def test_headless_in_a_container_writes_only_to_the_store_and_the_tree(box: Scratch) -> None:
    store = box.vol / "store"
    env = dict(box.env, GUARDIAN_STORE=str(store))
    (box.root / "a.txt").write_text("a\n")
    w = Watch([], store, env, argv=["guardian", "watch", "--headless", str(box.root)],
              preexec=no_stdin, cwd=box.root)
    try:
        ready = w.ready()
        assert ready["store"] == str(store) and ready["files"] == 1
        (box.root / "b.txt").write_text("b\n")
        w.version(box.root / "b.txt", "created")
        status = subprocess.run(["guardian", "status", "--json"], env=env, cwd=box.base,
                                capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        assert status.returncode == 0, status.stderr
        s = json.loads(status.stdout)
        assert s["running"] and s["ready"] and s["store"] == str(store)
        health = subprocess.run(["guardian", "health"], env=env, cwd=box.base,
                                capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
        assert health.returncode in (0, 1), health.stdout  # healthy or degraded: alive
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(30) == 0
    finally:
        w.close()
    assert not w.raw, w.raw[:5]  # every stderr line is one JSON object
    assert [e["event"] for e in w.events][-2:] == ["stopping", "stopped"]
    assert w.events[-2]["reason"] == "SIGTERM"
    # Outside the store and the tree: only the (now empty) control-socket directory.
    assert box.written() == {f"tmp/guardian-{os.getuid()}"}, box.written()
    assert os.listdir(box.base / "tmp" / f"guardian-{os.getuid()}") == []
    assert sorted(os.listdir(box.root)) == ["a.txt", "b.txt"]
    assert (store / "guardian.db").is_file()


_EMITTERS = """
import threading
from guardian.daemon.loop import emit_json_line, emit_json_lines
from guardian.events import WarningEvent

def batches():
    for i in range(400):
        emit_json_lines([WarningEvent(message="v" * 300 + str(i), source="loop")] * 50)

def singles():
    for i in range(8000):
        emit_json_line(WarningEvent(message=f"w{i}", source="logging"))

threads = [threading.Thread(target=batches), threading.Thread(target=singles)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_json_lines_from_several_threads_never_interleave() -> None:
    """The daemon's loop emits versions in batches while the logging handler emits warnings
    from the watcher's threads (an inotify overflow during a burst): a consumer reading
    stderr line by line must get whole JSON objects, never two spliced into one line."""
    out = subprocess.run([sys.executable, "-c", _EMITTERS], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stderr.splitlines()
    assert len(lines) == 400 * 50 + 8000
    broken = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            broken.append(line[:200])
    assert not broken, f"{len(broken)} spliced lines, first: {broken[0]}"
