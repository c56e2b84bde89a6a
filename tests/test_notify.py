"""systemd ``Type=notify``: a real ``AF_UNIX`` datagram socket in the test plays systemd (the
service manager is a boundary we do not own); the daemon is a real ``guardian watch``."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from guardian.daemon.notify import Notifier, socket_address, watchdog_interval

from .conftest import Cli, Watch


class FakeSystemd:
    """The receiving end of ``$NOTIFY_SOCKET``: every datagram, parsed into a dict."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[dict[str, str]] = []

    def wait(self, pred: Callable[[dict[str, str]], bool], timeout: float = 30.0,
             what: str = "", start: int = 0) -> dict[str, str]:
        """Read datagrams until one (from index ``start`` on) matches ``pred`` (a condition
        with a timeout)."""
        deadline = time.monotonic() + timeout
        for m in self.messages[start:]:
            if pred(m):
                return m
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no notification {what} within {timeout}s: "
                                     f"{self.messages[-10:]}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            m = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append(m)
            if pred(m):
                return m

    def count(self, key: str) -> int:
        return sum(1 for m in self.messages if key in m)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd_path(tmp_path: Path) -> Iterator[tuple[FakeSystemd, str]]:
    path = f"/tmp/gsd-{uuid.uuid4().hex[:12]}.sock"  # short: sun_path holds 108 bytes
    s = FakeSystemd(path)
    yield s, path
    s.close()
    os.unlink(path)


def test_ready_after_the_baseline_then_watchdog_then_stopping(
        root: Path, store: Path, env: dict[str, str], cli: Cli,
        systemd_path: tuple[FakeSystemd, str]) -> None:
    systemd, path = systemd_path
    for i in range(20):
        (root / f"f{i}.txt").write_text(f"file {i}")
    w = Watch([root], store, dict(env, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000"),
              ["--headless"])
    try:
        systemd.wait(lambda m: m.get("READY") == "1", what="READY=1")
        # READY=1 means the baseline is stored: every file has its version already.
        paths = {v["path"] for v in cli.log()}
        assert paths == {str(root / f"f{i}.txt") for i in range(20)}
        ready = next(m for m in systemd.messages if m.get("READY") == "1")
        assert "20 files" in ready["STATUS"]
        assert systemd.messages[0]["STATUS"].startswith("starting: recording the baseline")
        start = len(systemd.messages)
        for _ in range(3):  # WATCHDOG=1 keeps coming while the loop runs
            systemd.wait(lambda m: m.get("WATCHDOG") == "1", what="WATCHDOG=1", start=start)
            start = len(systemd.messages)
        w.proc.send_signal(signal.SIGTERM)
        stopping = systemd.wait(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
        assert "SIGTERM" in stopping["STATUS"]
        assert w.proc.wait(30) == 0
    finally:
        w.close()
    assert not w.raw, w.raw[:5]
    assert [e["event"] for e in w.events][-2:] == ["stopping", "stopped"]


def test_abstract_socket_and_a_watchdog_meant_for_another_process(
        root: Path, store: Path, env: dict[str, str]) -> None:
    name = f"guardian-test-{uuid.uuid4().hex}"
    systemd = FakeSystemd("\0" + name)
    (root / "a.txt").write_text("a")
    # WATCHDOG_PID names another process: the watchdog is not ours to feed.
    w = Watch([root], store, dict(env, NOTIFY_SOCKET="@" + name, WATCHDOG_USEC="100000",
                                  WATCHDOG_PID=str(os.getpid())), ["--headless"])
    try:
        systemd.wait(lambda m: m.get("READY") == "1", what="READY=1 on the abstract socket")
        w.ready()
        assert w.stop() == 0
        systemd.wait(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
        assert systemd.count("WATCHDOG") == 0, systemd.messages
    finally:
        w.close()
        systemd.close()


def test_no_systemd_listening_does_not_stop_the_daemon(
        root: Path, store: Path, env: dict[str, str], tmp_path: Path) -> None:
    (root / "a.txt").write_text("a")
    w = Watch([root], store, dict(env, NOTIFY_SOCKET=str(tmp_path / "gone.sock"),
                                  WATCHDOG_USEC="100000"), ["--headless"])
    try:
        w.ready()
        (root / "b.txt").write_text("b")
        w.version(root / "b.txt", "created")
        assert w.stop() == 0
    finally:
        w.close()
    assert not w.raw, w.raw[:5]


def test_environment_parsing() -> None:
    assert socket_address("@x") == "\0x"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("") is None
    assert socket_address("vsock:2:1") is None
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid) is None
    assert watchdog_interval({}, pid) is None
    # The variables are removed, so no validator or sink the daemon starts inherits them.
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(pid), "A": "b"}
    n = Notifier.from_environment(env)
    assert (n.address, n.watchdog_s) == ("\0x", 0.5)
    assert env == {"A": "b"}
    assert not Notifier.from_environment({}).enabled


def test_a_send_to_nobody_is_counted_not_raised(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "nobody.sock"))
    assert n.send(READY=1) is False
    assert n.failures == 1
    n.close()
    assert Notifier().send(READY=1) is False  # disabled: not a failure


def test_status_lines_follow_the_daemons_events(systemd_path: tuple[FakeSystemd, str]) -> None:
    from guardian.events import Health, Ready, Stopping

    systemd, path = systemd_path
    n = Notifier(path)
    n.on_event(Ready(store="/s", roots=["/r"], pid=1, files=3, versions=4, recorded=3,
                     elapsed_ms=5, socket=None))
    n.on_event(Health(degraded=True, causes=[{"cause": "watcher",
                                              "message": "the file watcher failed"}]))
    n.on_event(Health(degraded=False))
    n.on_event(Stopping(reason="SIGTERM", pending=2))
    n.close()
    got = [systemd.wait(lambda m: True, start=i) for i in range(4)]
    assert got == [
        {"READY": "1", "STATUS": "watching /r: 3 files, 4 versions"},
        {"STATUS": "degraded: the file watcher failed"},
        {"STATUS": "watching (healthy again)"},
        {"STOPPING": "1", "STATUS": "stopping (SIGTERM): recording 2 pending changes"},
    ]
