"""Tables a store creates when first written (alerts, batches, damaged marks, problems,
observe roll-ups and reports, agent sessions): a new store is a third of the size it was,
every command works before and after those tables exist, readers see rows a writer adds
after they opened, and a store made before (every table created up front) opens and works."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from guardian.store.db import PAGE_SIZE, Store, store_size
from tests.conftest import Cli
from tests.test_agents_cli import Hook

LAZY = {"problems", "batches", "batch_entries", "damaged", "alerts", "operation_hours",
        "version_hours", "store_sizes", "reports", "filed_suggestions", "agent_sessions",
        "agent_prompts", "agent_calls", "agent_changes"}
OLD_SCHEMA = Path(__file__).parent / "data" / "store_schema_before_lazy.sql"


def tables(store: Path) -> set[str]:
    db = sqlite3.connect(f"file:{store / 'guardian.db'}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()


def test_a_new_store_is_small_and_holds_no_empty_tables(cli: Cli, root: Path,
                                                        store: Path) -> None:
    (root / "a.txt").write_text("hello\n")
    cli.run("snapshot", check=True, cwd=root)
    # 15 b-trees of one page each (meta, roots, objects, files, versions, operations and
    # their indexes), not the 37 a store had with every table created up front. (Before any
    # reader opens it: a reader leaves the WAL index, 32 KiB, until the next writer closes.)
    assert store_size(store) <= 16 * PAGE_SIZE
    assert not tables(store) & LAZY


def test_every_reading_command_works_on_a_store_without_the_tables(cli: Cli, root: Path,
                                                                   store: Path) -> None:
    (root / "a.txt").write_text("hello\n")
    cli.run("snapshot", check=True, cwd=root)
    assert cli.json("alerts")["alerts"] == []
    assert cli.json("sessions") == []
    assert cli.json("metrics")["totals"]["count"] >= 1  # the snapshot's operation
    health = cli.run("health", "--json")  # unhealthy (no daemon watches it), not a crash
    assert json.loads(health.stdout)["checks"] and not health.stderr
    assert cli.json("verify")["ok"] is True
    assert cli.run("log", "--json", check=True).stdout
    assert cli.run("gc", check=True).returncode == 0
    p = cli.run("undo", "--session", "nosuch")
    assert p.returncode == 2 and b"nosuch" in p.stderr and b"Traceback" not in p.stderr
    # Reading created nothing: a store pays for a table when something is written to it.
    assert not tables(store) & LAZY


def test_writing_commands_create_their_tables_and_read_them_back(env: dict[str, str],
                                                                cli: Cli, root: Path,
                                                                store: Path) -> None:
    (root / "a.txt").write_text("hello\n")
    cli.run("snapshot", check=True, cwd=root)
    # apply: a batch (batches, batch_entries).
    manifest = root.parent / "m.json"
    manifest.write_text(json.dumps({"operations": [
        {"op": "write", "path": "b.txt", "content": "batch\n"}]}))
    cli.run("apply", str(manifest), "--root", str(root), check=True)
    assert (root / "b.txt").read_text() == "batch\n"
    assert {"batches"} <= tables(store)
    # An agent's session through the hook (agent_sessions, agent_calls, agent_changes), and
    # its undo.
    h = Hook(env, store, root)
    h("UserPromptSubmit", prompt="write c")
    assert h.tool("PreToolUse", "Write", "t1", file_path=root / "c.txt", content="c\n") is None
    (root / "c.txt").write_text("c\n")
    h.tool("PostToolUse", "Write", "t1", file_path=root / "c.txt", content="c\n")
    s = cli.json("sessions", "S1")
    assert s["prompts"] == 1 and [f["path"] for f in s["files"]] == [str(root / "c.txt")]
    assert cli.json("undo", "--session", "S1")["conflicts"] == 0
    assert not (root / "c.txt").exists()
    cli.run("report", check=True)  # saved in the store (reports)
    assert cli.json("report", "--list")
    assert {"agent_sessions", "agent_calls", "agent_changes", "reports"} <= tables(store)


def test_a_reader_open_before_a_table_exists_sees_what_the_writer_adds(tmp_path: Path
                                                                      ) -> None:
    path = tmp_path / "store"
    Store.open(path, write=True, create=True).close()
    reader = Store.open(path, write=False)
    try:
        assert reader.alerts() == []  # answered by an empty shadow: no table yet
        with pytest.raises(sqlite3.OperationalError):  # a reader's write goes nowhere
            reader.db.execute("INSERT INTO alerts(time_ns, severity, kind, message)"
                              " VALUES(1, 'info', 'x', 'm')")
        with Store.open(path, write=True) as writer:
            assert writer.alerts() == []  # the writer reads before it writes, too
            with pytest.raises(RuntimeError), writer.transaction():
                writer.add_alert("warning", "invalid", "rolled back", None)
                raise RuntimeError("the transaction fails")
            assert writer.alerts() == [] and "alerts" not in tables(path)
            with writer.transaction():
                writer.add_alert("warning", "invalid", "kept", None)
            assert [a["message"] for a in writer.alerts()] == ["kept"]
        assert "alerts" in tables(path)
        assert [a["message"] for a in reader.alerts()] == ["kept"]  # no stale shadow
    finally:
        reader.close()
    with Store.open(path, write=False) as again:
        assert [a["message"] for a in again.alerts()] == ["kept"]


def test_a_store_made_with_every_table_up_front_opens_and_works(cli: Cli, root: Path,
                                                                store: Path) -> None:
    """The schema main's Guardian created (tests/data/store_schema_before_lazy.sql)."""
    store.mkdir(mode=0o700)
    (store / "objects").mkdir(mode=0o700)
    db = sqlite3.connect(store / "guardian.db", isolation_level=None)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("BEGIN;" + OLD_SCHEMA.read_text() +
                     f";INSERT INTO meta VALUES('created_ns', '{time.time_ns()}');"
                     "PRAGMA user_version=1;COMMIT;")
    db.close()
    before = tables(store)
    assert before >= LAZY
    (root / "a.txt").write_text("one\n")
    cli.run("snapshot", str(root), check=True)
    (root / "a.txt").write_text("two\n")
    cli.run("snapshot", str(root), check=True)
    versions = cli.log(root / "a.txt")
    assert [v["kind"] for v in versions] == ["modified", "created"]
    oldest = str(versions[-1]["id"])
    assert cli.run("show", str(root / "a.txt"), "--version", oldest,
                   check=True).stdout == b"one\n"
    cli.run("restore", str(root / "a.txt"), "--version", oldest, check=True)
    assert (root / "a.txt").read_text() == "one\n"
    assert cli.json("alerts")["alerts"] == [] and cli.json("verify")["ok"] is True
    cli.run("gc", check=True)
    assert tables(store) == before  # nothing dropped, nothing added
