"""Validators on every core: real worker processes, the same answers as checking here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from guardian.validation import pool as validatepool
from guardian.validation import validators

from .conftest import Cli, wait_until

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")


def python_source(i: int, lines: int = 2000) -> bytes:
    return b"".join(b"value_%d = %d\n" % (j, j + i) for j in range(lines))


@pytest.fixture
def workers():
    assert validatepool.warm()
    yield validatepool._workers
    validatepool._close()


def test_the_workers_answer_what_checking_here_answers(workers, tmp_path: Path) -> None:
    jobs: list[validatepool.Job] = [
        ("python", python_source(i), str(tmp_path / f"m{i}.py"), {}) for i in range(12)]
    jobs[3] = ("python", b"def f(:\n" + python_source(3), str(tmp_path / "bad.py"), {})
    jobs.append(("json", b'{"a": [1, 2]', str(tmp_path / "x.json"), {}))  # stays here
    jobs.append(("yaml", b"a: [1, 2\n" * 2000, str(tmp_path / "x.yaml"), {}))
    offloaded: set[int] = set()
    got = validatepool.run_many(jobs, offloaded=offloaded)
    assert got == [validators.run(*job) for job in jobs]
    assert got[3].problems[0].line == 1 and not got[3].ok
    assert offloaded and offloaded <= set(range(len(jobs))) - {12}


def test_a_worker_killed_mid_batch_changes_no_answer(workers, tmp_path: Path) -> None:
    jobs: list[validatepool.Job] = [
        ("python", python_source(i), str(tmp_path / f"m{i}.py"), {}) for i in range(12)]
    expected = [validators.run(*job) for job in jobs]
    for w in list(workers):
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait(timeout=10)
    offloaded: set[int] = set()
    assert validatepool.run_many(jobs, offloaded=offloaded) == expected
    assert not offloaded
    assert validatepool.warm()  # new ones start
    assert validatepool.run_many(jobs, offloaded=offloaded) == expected and offloaded


def test_a_program_that_never_says_ready_is_never_sent_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An odd ``sys.executable`` (an embedding host): the cheap checks of a batch are done
    here, at once; a costly one is not validated (never here: it would hold the GIL)."""
    validatepool._close()
    monkeypatch.setattr(validatepool, "_mute", False)  # restored (False) after the test
    monkeypatch.setattr(validatepool, "WORKER_ARGV",
                        [sys.executable, "-c", "import time; time.sleep(600)"])
    monkeypatch.setattr(validatepool, "STARTUP_S", 0.5)
    jobs: list[validatepool.Job] = [
        ("python", python_source(i, 4000), str(tmp_path / f"m{i}.py"), {}) for i in range(20)]
    assert all(0 < validatepool._cost(j) <= validatepool.INLINE_BUDGET_S for j in jobs)
    assert sum(map(validatepool._cost, jobs)) >= validatepool.START_WORK_S  # worth a start
    offloaded: set[int] = set()
    try:
        assert validatepool.run_many(jobs, offloaded=offloaded) == [
            validators.run(*job) for job in jobs]
        assert not offloaded
        # They are dropped (killed), and none is started again: no batch waits for them.
        assert not validatepool._workers
        assert validatepool.run_many(jobs, offloaded=offloaded)[0].ok and not offloaded
        assert not validatepool._workers
        costly = ("python", python_source(0, 40000), str(tmp_path / "big.py"), {})
        assert validatepool.run_many([costly]) == [validators.Result("python", skipped=(
            "not validated: too costly to check here, and no validator process could be "
            "started"))]
        assert not validatepool._workers
    finally:
        validatepool._close()


def test_workers_never_run_the_embedding_program_and_die_with_it(tmp_path: Path,
                                                                 env: dict[str, str]) -> None:
    """A program using Guardian's API has no ``if __name__ == '__main__'`` guard: its
    top-level code must run once (multiprocessing's workers would import it again), and its
    workers must go when it is killed."""
    marker = tmp_path / "runs.txt"
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        from guardian.validation import pool as validatepool
        with open({str(marker)!r}, "a") as f:
            f.write("ran\\n")
        assert validatepool.warm()
        jobs = [("python", b"x = 1\\n" * 20000, "/tmp/m%d.py" % i, {{}}) for i in range(8)]
        done = set()
        validatepool.run_many(jobs, offloaded=done)
        print(json.dumps({{"offloaded": len(done),
                           "workers": [w.proc.pid for w in validatepool._workers]}}),
              flush=True)
        sys.stdin.read()
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        report = json.loads(proc.stdout.readline())
        assert report["offloaded"] > 0
        assert marker.read_text() == "ran\n"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

        def gone() -> bool:
            for pid in report["workers"]:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if f.read().split(") ")[1].split()[0] != "Z":
                            return False
                except FileNotFoundError:
                    pass
            return True

        wait_until(gone, what="the workers exit once their parent is gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()


def test_a_big_batch_of_python_files_is_validated_on_several_cores(cli: Cli,
                                                                   root: Path) -> None:
    """`guardian apply` starts workers for a batch whose checks outweigh their start; the
    operations say which files a worker checked, and an invalid file a worker found refuses
    the batch naming its line, as it would checked here."""
    from .test_batch import apply

    ops = [{"op": "write", "path": f"big/m{i:02d}.py",
            "content": python_source(i, 12000).decode()} for i in range(16)]
    p = apply(cli, root, {"operations": ops}, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["optimisations"].get("parallel_validation", 0) > 0
    ops[9]["content"] = "x = 1\n" * 5 + "def f(:\n" + ops[9]["content"]
    p = apply(cli, root, {"operations": ops}, "--json")
    assert p.returncode == 1, p.stdout
    err = json.loads(p.stdout)["error"]
    assert err["category"] == "validation" and err["path"].endswith("big/m09.py")
    assert (err["line"], err["column"]) == (6, 7)
    assert (root / "big" / "m09.py").read_bytes() == python_source(9, 12000)
