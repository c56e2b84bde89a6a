"""``guardian mcp``: the MCP SDK's own client, over a real ``guardian mcp`` subprocess on stdio,
lists the tools and calls each one; refusals arrive as tool errors naming path, line, column."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

TOOLS = {"write_files", "edit_file", "file_history", "show_version", "diff_versions",
         "restore", "validate"}


@asynccontextmanager
async def session(env: dict[str, str], root: Path, store: Path,
                  *extra: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "guardian", "mcp", "--root", str(root),
                                      "--store", str(store), *extra], env=env, cwd=str(root))
    with Path(store.parent / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            yield s


def run(env: dict[str, str], root: Path, store: Path,
        body: Callable[[ClientSession], Awaitable[None]], *extra: str) -> None:
    async def main() -> None:
        async with session(env, root, store, *extra) as s:
            with anyio.fail_after(90):
                await body(s)

    anyio.run(main)


async def call(s: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    """A call that must succeed: its structured result."""
    res = await s.call_tool(tool, args)
    assert not res.is_error, (tool, res.content)
    out: dict[str, Any] = res.structured_content or {}
    assert json.loads(res.content[0].text) == out  # the same result as text, for any client
    return out


async def refused(s: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    """A call that must be a tool error: its error object."""
    res = await s.call_tool(tool, args)
    assert res.is_error, (tool, res.structured_content)
    err: dict[str, Any] = (res.structured_content or {})["error"]
    assert res.content[0].text == err["message"]
    return err


def test_tools_are_listed_with_schemas_and_each_works(env: dict[str, str], root: Path,
                                                      store: Path, cli: Any) -> None:
    (root / "notes.txt").write_text("one\ntwo\n")
    (root / "conf.json").write_text('{"a": 1}\n')
    cli.run("snapshot", str(root), check=True)
    seen: dict[str, Any] = {}

    async def body(s: ClientSession) -> None:
        listed = (await s.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        for t in listed:
            assert t.input_schema["type"] == "object" and "properties" in t.input_schema
            assert t.description

        out = await call(s, "write_files", operations=[
            {"op": "write", "path": "new.py", "content": "x = 1\n"},
            {"op": "edit", "path": "notes.txt", "old": "two", "new": "TWO"}])
        assert [f["action"] for f in out["files"]] == ["write", "write"]
        assert out["session"].startswith("mcp-")
        seen["session"] = out["session"]
        assert (root / "new.py").read_text() == "x = 1\n"

        dry = await call(s, "write_files", dry_run=True,
                         operations=[{"op": "write", "path": "new.py", "content": "x = 2\n"}])
        assert "+x = 2" in dry["diff"] and (root / "new.py").read_text() == "x = 1\n"

        await call(s, "edit_file", path="notes.txt", old_string="one", new_string="ONE")
        assert (root / "notes.txt").read_text() == "ONE\nTWO\n"
        err = await refused(s, "edit_file", path="notes.txt", old_string="zzz", new_string="y")
        assert err["category"] == "usage" and "not in the file" in err["message"]
        (root / "twice.txt").write_text("a a\n")
        err = await refused(s, "edit_file", path="twice.txt", old_string="a", new_string="b")
        assert "occurs 2 times" in err["message"]
        assert (root / "twice.txt").read_text() == "a a\n"

        hist = await call(s, "file_history", path="notes.txt")
        ids = [v["id"] for v in hist["versions"]]
        assert len(ids) == 3 and ids == sorted(ids, reverse=True)
        assert hist["versions"][0]["session"] == seen["session"]
        first = ids[-1]

        shown = await call(s, "show_version", path="notes.txt", version=first)
        assert shown["content"] == "one\ntwo\n" and shown["version"]["id"] == first

        diff = await call(s, "diff_versions", path="notes.txt", **{"from": first})
        assert "-one" in diff["diff"] and "+ONE" in diff["diff"] and diff["to"] == "disk"

        plan = await call(s, "restore", path="notes.txt", version=first)
        assert plan["dry_run"] is True and [c["action"] for c in plan["changes"]] == ["write"]
        assert (root / "notes.txt").read_text() == "ONE\nTWO\n"  # a dry run by default
        done = await call(s, "restore", path="notes.txt", version=first, dry_run=False)
        assert done["dry_run"] is False
        assert (root / "notes.txt").read_text() == "one\ntwo\n"

        bad = await call(s, "validate", path="conf.json", content='{"a": 1,}')
        assert bad["valid"] is False
        assert bad["problems"][0]["line"] == 1 and bad["problems"][0]["column"]
        good = await call(s, "validate", path="conf.json", content='{"a": 2}')
        assert good["valid"] is True and "json" in good["validators"]
        assert (await call(s, "validate", path="conf.json"))["valid"] is True

        outside = root.parent / "outside.txt"
        err = await refused(s, "write_files", operations=[
            {"op": "write", "path": str(outside), "content": "x"}])
        assert err["category"] == "permission" and not outside.exists()
        err = await refused(s, "show_version", path="../outside.txt")
        assert err["category"] == "permission"
        err = await refused(s, "write_files", operations=[{"op": "chmod", "path": "a"}])
        assert err["category"] == "usage" and "operation 1" in err["message"]

    run(env, root, store, body)
    # The versions the server wrote carry its session, as the CLI sees them.
    labelled = [v for v in cli.log(root / "new.py") if v["session"] == seen["session"]]
    assert labelled and labelled[0]["origin"] == "batch"


def test_invalid_json_refuses_the_whole_batch(env: dict[str, str], root: Path, store: Path,
                                              cli: Any) -> None:
    files = {"a.json": b'{"a": 1}\n', "b.txt": b"keep me\n", "c.py": b"x = 1\n"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    cli.run("snapshot", str(root), check=True)
    before = cli.log()

    async def body(s: ClientSession) -> None:
        err = await refused(s, "write_files", operations=[
            {"op": "write", "path": "a.json", "content": '{"a": 2}\n'},
            {"op": "delete", "path": "b.txt"},
            {"op": "edit", "path": "c.py", "old": "x = 1", "new": "x = 2"},
            {"op": "write", "path": "d.json", "content": '{\n  "d": [1, 2,\n}\n'},
            {"op": "write", "path": "e.txt", "content": "new\n"}])
        assert err["category"] == "validation"
        assert err["operation"] == 4 and err["path"] == str(root / "d.json")
        assert (err["line"], err["column"]) == (3, 1)
        assert "d.json:3:1" in err["message"]

    run(env, root, store, body)
    for name, data in files.items():
        assert (root / name).read_bytes() == data
    assert not (root / "d.json").exists() and not (root / "e.txt").exists()
    assert cli.log() == before  # nothing recorded either


def test_through_a_running_daemon_with_a_given_session(env: dict[str, str], root: Path,
                                                       store: Path, cli: Any,
                                                       watch: Any) -> None:
    (root / "a.txt").write_text("old\n")
    watch(root)

    async def body(s: ClientSession) -> None:
        out = await call(s, "write_files",
                         operations=[{"op": "write", "path": "a.txt", "content": "new\n"}])
        assert out["session"] == "agent-7"
        err = await refused(s, "write_files", operations=[
            {"op": "write", "path": "bad.toml", "content": "a = \n"}])
        assert err["category"] == "validation" and err["line"] == 1

    run(env, root, store, body, "--session", "agent-7")
    assert (root / "a.txt").read_text() == "new\n"
    assert not (root / "bad.toml").exists()
    [v] = [v for v in cli.log(root / "a.txt") if v["session"] == "agent-7"]
    assert v["origin"] == "batch"
    assert cli.json("status")["running"] is True
