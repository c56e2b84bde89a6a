"""Rule files and globs are untrusted input: bounded cost, one-line errors, a daemon that
keeps recording whatever a rule file holds; and Guardian says when a path is ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guardian.errors import GlobError
from guardian.rules.globs import compile_glob
from guardian.rules.rulefiles import RULE_FILE, RuleSet

from .conftest import Cli, Watch, sha256

#: 4 KB that made tomllib recurse: RecursionError is not a TOMLDecodeError (exit 70).
DEEP = "x = " + "[" * 2000 + "]" * 2000 + "\n"
#: A glob Python's re took seconds per path to reject (backtracking).
PATHOLOGICAL = "**/**/**/**/*a*a*a*a*a*b"


def wait_alert(w: Watch, kind: str, start: int) -> dict:
    return w.wait(lambda e: e["event"] == "alert" and e["kind"] == kind,
                  what=f"a {kind} alert", start=start)


# ----------------------------------------------------------------------------- the daemon
def test_a_deeply_nested_rule_file_written_while_running_is_refused_and_capture_goes_on(
        root: Path, cli: Cli, watch) -> None:
    sub = root / "sub"
    sub.mkdir()
    notes = sub / "notes.txt"
    notes.write_text("v1\n")
    w = watch(root)
    m = w.mark()
    rule = sub / RULE_FILE
    rule.write_text(DEEP)
    w.version(rule, start=m)  # the write that loads it is recorded
    alert = wait_alert(w, "rules", m)
    assert f"{rule}:1: nested deeper than 32 levels (limit 32)" in alert["message"]
    for text in ("v2\n", "v3\n"):  # the write in that directory, and a later one
        notes.write_text(text)
        w.version(notes, kind="modified", start=m, sha256=sha256(text.encode()))
    status = cli.json("status", timeout=30)
    assert status["running"] is True
    assert [v["sha256"] for v in cli.log(rule)] == [sha256(DEEP.encode())]
    assert w.proc.poll() is None
    assert w.stop() == 0


def _many_rules(n: int) -> str:
    return "".join(f'[[rule]]\npaths = ["d{i}/**"]\nkeep_versions = 3\n' for i in range(n))


@pytest.mark.parametrize(("text", "needle"), [
    (DEEP, ":1: nested deeper than 32 levels (limit 32)"),
    (_many_rules(100_000), ": too big: "),                 # 4 MB, 100k rules
    (_many_rules(1_001), ":3001: rule: more than 1,000 rules (limit 1,000)"),
    ('ignore = [' + ", ".join(f'"g{i}"' for i in range(5_001)) + "]\n",
     ": 5,001 globs in paths and ignore (limit 5,000)"),
    ('[[rule]]\npaths = ["' + "*a" * 70 + '"]\n',
     ":2: paths: bad glob '*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*...': "
     "too many wildcards (limit 64) (at column 129)"),
    ('[[rule]]\npaths = ["**"]\noptions.json.' + ".".join(f"k{i}" for i in range(40))
     + " = 1\n", ":3: options: nested deeper than 32 levels (limit 32)"),
], ids=["deep", "huge", "rules", "globs", "wildcards", "dotted"])
def test_watch_refuses_a_rule_file_over_a_limit_with_one_line(root: Path, cli: Cli, text: str,
                                                             needle: str) -> None:
    rule = root / "sub" / RULE_FILE
    rule.parent.mkdir()
    rule.write_text(text)
    p = cli.run("watch", str(root), timeout=60)
    assert p.returncode == 2, p.stderr[-500:]
    assert p.stderr.count(b"\n") == 1, p.stderr[-500:]
    line = p.stderr.decode()
    assert f"{rule}{needle}" in line, line
    if needle == ": too big: ":
        assert "(limit 256 KiB)" in line


def test_a_pathological_glob_does_not_stall_the_daemon(root: Path, cli: Cli, watch) -> None:
    (root / RULE_FILE).write_text(f'[[rule]]\npaths = ["{PATHOLOGICAL}"]\non_invalid = "alert"\n')
    deep = root.joinpath(*["a" * 30] * 12)
    deep.mkdir(parents=True)
    target = deep / "notes.xb"  # ends like the glob, so no prefilter can answer for it
    target.write_text("v1\n")
    w = watch(root)  # the baseline evaluates the rules for every file: within the usual time
    m = w.mark()
    target.write_text("v2\n")
    w.version(target, kind="modified", start=m)
    t = time.monotonic()
    assert cli.json("status", timeout=30)["running"] is True
    assert time.monotonic() - t < 10
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(10) == 0


def test_an_edit_over_a_limit_keeps_the_last_good_rules(root: Path) -> None:
    rule = root / RULE_FILE
    rule.write_text('[[rule]]\npaths = ["*.json"]\non_invalid = "revert"\n')
    rs = RuleSet(str(root))
    assert rs.effective("a.json").on_invalid == "revert"
    for bad, needle in ((DEEP, ":1: nested deeper than 32 levels (limit 32)"),
                        ("#" * (300 * 1024), ": too big: 307,200 bytes (limit 256 KiB)")):
        rule.write_text(bad)
        assert rs.reload("") == f"{rule}{needle}"
        assert rs.effective("a.json").on_invalid == "revert"
    rule.unlink()
    rule.symlink_to(root / "elsewhere.toml")  # a symlink is not followed: no rule file here
    (root / "elsewhere.toml").write_text('[[rule]]\npaths = ["*.json"]\non_invalid = "alert"\n')
    assert rs.reload("") is None and rs.effective("a.json").on_invalid == "record"


def test_globs_in_force_in_a_directory_are_bounded(root: Path, cli: Cli) -> None:
    def rules(n: int, tag: str) -> str:
        return "".join(f'[[rule]]\npaths = ["{tag}{i}/**", "**/{tag}{i}.x", "{tag}{i}.y", '
                       f'"{tag}{i}.z"]\nprotect = true\n' for i in range(n // 4))

    (root / RULE_FILE).write_text(rules(4000, "a"))
    (root / "b").mkdir()
    (root / "b" / RULE_FILE).write_text(rules(4000, "b"))
    deepest = root / "b" / "c" / RULE_FILE
    deepest.parent.mkdir()
    deepest.write_text(rules(4000, "c"))
    rs = RuleSet(str(root))
    assert rs.discover() == [f"{deepest}: 4,000 globs here and 8,001 in the rule files above "
                             "would be in force (limit 10,000); this file is not applied"]
    assert not rs.effective("b/c/c1.x").protected and rs.effective("b/c/b1.x").protected
    p = cli.run("watch", str(root), timeout=60)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1
    assert f"{deepest}: 4,000 globs here".encode() in p.stderr


# ----------------------------------------------------------------------------- globs
@pytest.mark.parametrize(("glob", "yes", "no"), [
    ("*.py", ["a.py", ".py"], ["a/b.py", "a.pyc", "py"]),
    ("*", ["a", "a.b"], ["a/b"]),
    ("**", ["", "a", "a/b/c"], []),
    ("**/x", ["x", "a/x", "a/b/x"], ["ax", "x/a", "a/bx"]),
    ("a/**", ["a/b", "a/b/c"], ["a", "ab/c", "b/a/c"]),
    ("a/**/b", ["a/b", "a/x/b", "a/x/y/b"], ["ab", "a/xb", "b", "a/b/c"]),
    ("**/**/x", ["x", "a/x", "a/b/x"], ["y", "a/y"]),
    ("src/*/x.py", ["src/a/x.py"], ["src/x.py", "src/a/b/x.py"]),
    ("?", ["a", "."], ["", "ab", "/"]),
    ("a?c", ["abc"], ["ac", "a/c"]),
    ("[abc]", ["a", "c"], ["d", "ab", ""]),
    ("[!abc]", ["d", "."], ["a", "/", "dd"]),
    ("[^abc]", ["d"], ["b", "/"]),
    ("[a-c]x", ["bx"], ["dx", "-x"]),
    ("[-a]", ["-", "a"], ["b"]),
    ("[a-]", ["-", "a"], ["b"]),
    ("[]a]", ["]", "a"], ["b"]),
    ("[!]a]", ["b"], ["]", "a", "/", "b]"]),  # re's translation made it "[^/]a]"
    ("[\\]", ["\\"], ["a"]),
    ("{a,b}.txt", ["a.txt", "b.txt"], ["c.txt", "{a,b}.txt", ".txt"]),
    ("{a,{b,c}}x", ["ax", "bx", "cx"], ["x", "dx"]),
    ("{,a}x", ["x", "ax"], ["bx"]),
    ("{a/b,c}/d", ["a/b/d", "c/d"], ["a/d", "b/d"]),
    ("x{,.md}", ["x", "x.md"], ["x."]),
    ("a,b", ["a,b"], ["a", "b"]),
    ("\\*", ["*"], ["a", ""]),
    ("\\{a,b\\}", ["{a,b}"], ["a", "b"]),
    ("\\?\\[x]", ["?[x]"], ["a[x]"]),
    ("a\\", ["a\\"], ["a"]),
    ("/top.txt", ["top.txt"], ["d/top.txt"]),
    ("*a*a*a*a*a*b", ["aaaaab", "xaxaxaxaxaxb"], ["aaaab", "aaaaa/b", "aaaaabx"]),
    (PATHOLOGICAL, ["aaaaab", "x/y/aaaaab"], ["x/y/aaaab", "x/aaaaa/b"]),
    (".github/workflows/*.{yml,yaml}", [".github/workflows/ci.yml", ".github/workflows/a.yaml"],
     [".github/workflows/ci.json", ".github/workflows/x/ci.yml"]),
    ("*.ü", ["ä.ü"], ["ä.u"]),
    ("*.txt", ["\udcff.txt"], ["\udcff.txx"]),  # a name that is not UTF-8
])
def test_glob_semantics(glob: str, yes: list[str], no: list[str]) -> None:
    g = compile_glob(glob)
    assert [p for p in yes if not g.match(p)] == [], glob
    assert [p for p in no if g.match(p)] == [], glob


@pytest.mark.parametrize(("glob", "message"), [
    ("", "empty glob"),
    ("/", "empty glob"),
    ("a**", "'**' must be a whole path segment (at column 2)"),
    ("**a", "'**' must be a whole path segment (at column 1)"),
    ("/x/a**", "'**' must be a whole path segment (at column 5)"),  # columns as written
    ("{**/a,b}", "'**' must be a whole path segment (at column 2)"),
    ("[abc", "unclosed '[' (at column 1)"),
    ("x/[a-", "unclosed '[' (at column 3)"),
    ("a}", "unmatched '}' (at column 2)"),
    ("{a,b", "unclosed '{' (at column 1)"),
    ("x{a,{b}", "unclosed '{' (at column 2)"),
    ("[z-a]", "bad range 'z-a' in '[...]' (at column 1)"),
    ("a" * 1025, "too long: 1025 characters (limit 1024)"),
    ("*" + "/*" * 64, "too many wildcards (limit 64) (at column 129)"),
    ("{a,b}" * 33, "too many brace alternatives (limit 64) (at column 165)"),
    ("{" * 9 + "a" + "}" * 9, "braces nested deeper than 8 (limit 8) (at column 9)"),
])
def test_glob_errors_say_what_and_where(glob: str, message: str) -> None:
    with pytest.raises(GlobError) as info:
        compile_glob(glob)
    assert str(info.value) == message


# ----------------------------------------------------------------------------- discovery
@pytest.fixture
def deep_tree(root: Path) -> Iterator[Path]:
    """A directory 1,200 levels under ``root``, removed without recursion afterwards (a
    recursive rmtree, pytest's included, would fail on it)."""
    levels = 1200
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    bottom = root.joinpath(*["d"] * levels)
    yield bottom
    for n in range(levels, 0, -1):
        here = root.joinpath(*["d"] * n)
        for child in here.iterdir():
            child.unlink()
        here.rmdir()


def test_discovery_walks_a_tree_deeper_than_pythons_recursion_limit(
        root: Path, cli: Cli, deep_tree: Path) -> None:
    rule = deep_tree / RULE_FILE
    rule.write_text('[[rule]]\npaths = ["**"]\nbogus = 1\n')
    errors = RuleSet(str(root)).discover()
    assert [e.split(": ", 1)[0] for e in errors] == [f"{rule}:3"]
    p = cli.run("watch", str(root), timeout=60)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1, p.stderr[-300:]
    assert f"{rule}:3: bogus: unknown key".encode() in p.stderr


# ----------------------------------------------------------------------------- ignored paths
@pytest.fixture
def ignoring_tree(root: Path) -> Path:
    (root / ".gitignore").write_text("# build output\n\n*.log\nbuild/\n!keep.log\n")
    (root / "sub").mkdir()
    (root / "sub" / RULE_FILE).write_text('ignore = ["*.tmp", "cache/**"]\n')
    (root / "build").mkdir()
    (root / ".git").mkdir()
    for rel in ("a.log", "keep.log", "build/x.o", "sub/a.tmp", "sub/a.txt", ".git/config",
                "plain.txt"):
        (root / rel).write_text("x\n")
    return root


@pytest.mark.parametrize(("rel", "ignored"), [
    ("a.log", {"by": "gitignore", "pattern": "*.log", "from": ".gitignore:3", "path": "a.log"}),
    ("build/x.o", {"by": "gitignore", "pattern": "build/", "from": ".gitignore:4",
                   "path": "build"}),
    ("build", {"by": "gitignore", "pattern": "build/", "from": ".gitignore:4", "path": "build"}),
    ("sub/a.tmp", {"by": "rules", "pattern": "*.tmp", "from": f"sub/{RULE_FILE}:1",
                   "path": "sub/a.tmp"}),
    ("sub/cache/x", {"by": "rules", "pattern": "cache/**", "from": f"sub/{RULE_FILE}:1",
                     "path": "sub/cache/x"}),
    (".git/config", {"by": "git", "pattern": ".git/", "path": ".git"}),
    ("keep.log", None),
    ("sub/a.txt", None),
    ("plain.txt", None),
])
def test_rules_says_whether_and_why_a_path_is_ignored(cli: Cli, ignoring_tree: Path, rel: str,
                                                      ignored: dict | None) -> None:
    root = ignoring_tree
    out = cli.json("rules", str(root / rel), cwd=root)
    if ignored is not None and "from" in ignored:
        ignored = {**ignored, "from": f"{root}/{ignored['from']}"}
    assert out["ignored"] == ignored
    human = cli.run("rules", str(root / rel), check=True, cwd=root).stdout.decode()
    if ignored is None:
        assert "ignored" not in human
    else:
        [line] = [x for x in human.splitlines() if "ignored" in x]
        assert line.endswith(": Guardian does not record it")
        if ignored["by"] != "git":
            assert f"{ignored['pattern']!r} at {ignored['from']}" in line, line


def test_rules_says_the_store_inside_a_root_is_ignored(cli: Cli, root: Path) -> None:
    store = root / "history"
    p = cli.run("rules", str(store / "guardian.db"), "--json", "--store", str(store),
                store=False, check=True, cwd=root)
    assert json.loads(p.stdout)["ignored"] == {"by": "store", "pattern": "history/",
                                               "path": "history"}


def test_log_of_an_ignored_path_says_it_is_ignored(cli: Cli, ignoring_tree: Path,
                                                  watch) -> None:
    root = ignoring_tree
    w = watch(root)
    for rel, why in (("a.log", f"(by .gitignore pattern '*.log' at {root}/.gitignore:3)"),
                     ("build/x.o", f"(by .gitignore pattern 'build/' at {root}/.gitignore:4)"),
                     ("sub/a.tmp", f"(by ignore glob '*.tmp' at {root}/sub/{RULE_FILE}:1)"),
                     (".git/config", "(inside .git/)")):
        p = cli.run("log", str(root / rel), cwd=root)
        assert p.returncode == 2, (rel, p.stderr)
        assert p.stderr.decode() == (f"guardian log: error: {root / rel} is ignored {why}; "
                                     "Guardian does not record it\n")
    p = cli.run("log", str(root / "missing.txt"), cwd=root)
    assert p.returncode == 2 and b"missing.txt: no recorded versions" in p.stderr
    assert cli.log(root / "keep.log")  # re-included by "!keep.log": recorded
    assert w.proc.poll() is None


# ----------------------------------------------------------------------------- benchmark
def test_the_rules_benchmark_group_runs(cli: Cli, tmp_path: Path) -> None:
    """`python -m bench --quick rules`: every row measured, beside the re-based baseline."""
    repo = Path(__file__).resolve().parent.parent
    env = {**cli.env, "TMPDIR": str(tmp_path), "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "rules"],
                       capture_output=True, env=env, cwd=repo, timeout=300)
    assert p.returncode in (0, 1), p.stderr.decode()[-2000:]
    tables = {t["name"]: t for t in json.loads(p.stdout)["tables"]}
    assert set(tables) == {"rules.evaluate", "rules.pathological"}
    for t in tables.values():
        assert not t["error"] and t["rows"], t
        for row in t["rows"]:
            assert row["value"] > 0, row
    assert all(r["baseline"] > 0 for r in tables["rules.evaluate"]["rows"])
    patho = tables["rules.pathological"]["rows"][0]
    assert patho["baseline"] > 100 * patho["value"], patho  # re: seconds; now: microseconds
