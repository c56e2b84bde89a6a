"""``guardian health``: six real checks and the exit codes a container HEALTHCHECK reads.

Damage is real: a flipped byte in a stored object, a full tmpfs under the store, a daemon
stopped with SIGSTOP (it holds its socket but answers nothing) or not running at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from guardian.observe import health
from guardian.validation import validators
from guardian.validation.validators import Result

from .conftest import Cli, Watch, wait_until
from .test_bad_input import small_fs as small_fs  # a fixture


def _checks(out: dict) -> dict[str, str]:
    return {k: v["status"] for k, v in out["checks"].items()}


def _health(cli: Cli, *args: str) -> tuple[int, dict]:
    import json

    p = cli.run("health", "--json", *args)
    assert p.stderr == b"", p.stderr
    return p.returncode, json.loads(p.stdout)


def test_healthy_with_a_daemon_then_unhealthy_without(root: Path, cli: Cli, watch) -> None:
    (root / "a.py").write_text("x = 1\n")
    (root / "b.json").write_text('{"b": 2}\n')
    w = watch(root)
    code, out = _health(cli)
    assert code == 0 and out["overall"] == "healthy", out
    assert set(out["checks"]) == {"backup", "recovery", "validation", "optimisation",
                                  "watcher", "store"}
    for c in out["checks"].values():
        assert set(c) == {"status", "healthy", "detail", "recommendations"}
    d = out["checks"]["watcher"]["detail"]
    assert d["running"] and d["sync_cookie"]["ok"] and d["inotify"]["max_user_watches"] > 0
    assert out["checks"]["recovery"]["detail"]["restored"] >= 1
    assert out["checks"]["validation"]["detail"]["checks"] == 14
    assert out["checks"]["store"]["detail"]["integrity"] == "ok"
    text = cli.run("health").stdout.decode()
    assert text.startswith("healthy") and "sync cookie ok" in text
    assert w.stop() == 0
    # The watcher is dead: nothing records changes any more.
    code, out = _health(cli)
    assert code == 3 and out["overall"] == "unhealthy"
    assert _checks(out)["watcher"] == "unhealthy" and not out["checks"]["watcher"][
        "detail"]["running"]
    assert any("guardian watch" in r for r in out["recommendations"])


def test_a_stopped_daemon_is_a_dead_watcher(root: Path, cli: Cli, watch) -> None:
    """SIGSTOP: the socket still accepts connections, but nothing answers."""
    (root / "a.txt").write_text("x")
    w: Watch = watch(root)
    os.kill(w.proc.pid, signal.SIGSTOP)
    try:
        code, out = _health(cli)
        assert code == 3, out
        assert _checks(out)["watcher"] == "unhealthy"
        assert "does not answer" in out["checks"]["watcher"]["detail"]["error"]
    finally:
        os.kill(w.proc.pid, signal.SIGCONT)
    wait_until(lambda: _health(cli)[0] == 0, what="healthy again after SIGCONT")
    assert w.stop() == 0


def test_a_flipped_byte_in_an_object_is_found(root: Path, cli: Cli, store: Path) -> None:
    data = os.urandom(300 * 1024)  # a loose object (256 KiB or more): a file of its own
    (root / "big.bin").write_bytes(data)
    (root / "small.txt").write_text("small\n")
    cli.run("snapshot", check=True, cwd=root)
    loose = [p for p in (store / "objects").rglob("*") if p.is_file()]
    assert len(loose) == 1
    obj = loose[0]
    os.chmod(obj, 0o600)
    raw = bytearray(obj.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    obj.write_bytes(bytes(raw))
    code, out = _health(cli, "--full")
    assert code == 3
    assert _checks(out)["backup"] == "unhealthy"
    damaged = out["checks"]["backup"]["detail"]["damaged"]
    assert len(damaged) == 1 and damaged[0]["versions"]
    assert "Review and repair failed backups" in out["recommendations"][0]
    # A sample that covers every object finds it too (two objects, a sample of 50).
    code, out = _health(cli)
    assert code == 3 and _checks(out)["backup"] == "unhealthy"


def test_recovery_restores_into_a_temp_dir_not_the_tree(root: Path, cli: Cli, store: Path,
                                                        tmp_path: Path) -> None:
    (root / "f.txt").write_text("one\n")
    cli.run("snapshot", check=True, cwd=root)
    before = sorted(p.name for p in root.iterdir())
    from guardian.store.db import Store

    with Store.open(store, write=False) as s:
        r = health.check_recovery(s, sample=5)
    assert r["status"] == "healthy" and r["detail"]["restored"] == 1
    assert sorted(p.name for p in root.iterdir()) == before


def test_a_full_disk_is_unhealthy(root: Path, small_fs: Path, env: dict[str, str]) -> None:
    store = small_fs / "store"
    cli = Cli(env, store, root.parent)
    (root / "a.txt").write_text("x")
    cli.run("snapshot", check=True, cwd=root)
    code, out = _health(cli)
    assert out["checks"]["store"]["status"] != "unhealthy", out["checks"]["store"]
    filler = small_fs / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    try:
        code, out = _health(cli)
        assert code == 3
        s = out["checks"]["store"]
        assert s["status"] == "unhealthy" and s["detail"]["free_bytes"] < 1024 * 1024
        assert any("full" in r for r in s["recommendations"])
    finally:
        filler.unlink()


class _AcceptsAll:
    name = "json"

    def validate(self, data: bytes, path: str, options: object) -> Result:
        return Result("json")


@pytest.fixture
def lenient_json() -> object:
    validators.register(_AcceptsAll())  # a plugin that accepts what JSON refuses
    yield
    validators.unregister("json")


def test_validation_check_catches_a_validator_that_accepts_bad_input(lenient_json: object
                                                                     ) -> None:
    assert health.check_validation()["status"] == "degraded"
    validators.unregister("json")
    assert health.check_validation()["status"] == "healthy"


def test_samples_ship_with_the_package() -> None:
    for name in health.SAMPLE_FORMATS:
        for kind in ("good", "bad"):
            assert (health.SAMPLES_DIR / kind / f"{name}.sample").is_file()
