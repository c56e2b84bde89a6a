"""Input that must give a clear answer: template files that are not what they seem, command
validators that must see the new content, and every bad argument or manifest a one-line
usage error (exit 2), never a hang, a traceback or exit 70.

Everything runs the real CLI as a subprocess, with a real daemon where one matters.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guardian.rules.rulefiles import RULE_FILE

from .conftest import Cli, sha256

#: A checker as a user would write one: flags the word FORBIDDEN as path:line:col, reading
#: the file named by its first argument, or standard input when the second is "-".
CHECKER = """\
import sys
path = sys.argv[1]
data = sys.stdin.read() if sys.argv[2:] == ["-"] else open(path).read()
for n, line in enumerate(data.splitlines(), 1):
    col = line.find("FORBIDDEN")
    if col >= 0:
        print(f"{path}:{n}:{col + 1}: forbidden word")
        sys.exit(1)
"""


def apply(cli: Cli, root: Path, manifest: dict, *args: str, timeout: float = 60,
          ) -> subprocess.CompletedProcess[bytes]:
    return cli.run("apply", "-", "--root", str(root), *args, input=json.dumps(manifest).encode(),
                   cwd=root, timeout=timeout)


def apply_file(cli: Cli, root: Path, path: Path, text: str,
               *args: str) -> subprocess.CompletedProcess[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return cli.run("apply", str(path), "--root", str(root), *args, cwd=root)


def one_line(p: subprocess.CompletedProcess[bytes], code: int, *needles: bytes) -> str:
    err = p.stderr
    assert p.returncode == code, (p.returncode, err)
    assert err.count(b"\n") == 1 and b"Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err.decode()


def render(path: str, template_path: str) -> dict:
    return {"operations": [{"op": "render", "path": path, "template_path": template_path,
                            "vars": {"who": "you"}}]}


# ============================================================================ 5. templates
def test_a_fifo_template_is_refused_at_once(cli: Cli, root: Path) -> None:
    os.mkfifo(root / "t.fifo")
    p = apply(cli, root, render("out.txt", "t.fifo"), timeout=20)  # it used to hang here
    one_line(p, 1, b"t.fifo: is a FIFO, not a regular file")
    assert not (root / "out.txt").exists()


def test_a_fifo_template_does_not_block_the_daemon(cli: Cli, root: Path, watch) -> None:
    os.mkfifo(root / "t.fifo")
    w = watch(root)
    p = apply(cli, root, render("out.txt", "t.fifo"), timeout=20)
    one_line(p, 1, b"is a FIFO")
    assert cli.json("status", timeout=20)["running"] is True
    m = w.mark()
    (root / "after.txt").write_text("still recorded")
    w.version(root / "after.txt", start=m)
    # A batch that comes next is not stuck behind the refused one.
    (root / "t.tpl").write_text("Hi $who")
    assert apply(cli, root, render("out.txt", "t.tpl"), timeout=20).returncode == 0
    assert (root / "out.txt").read_text() == "Hi you"
    assert w.stop() == 0


def test_templates_must_be_regular_files_inside_a_root_or_the_manifests_dir(
        cli: Cli, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the tree")
    job = tmp_path / "job"
    # Outside every root and the manifest's directory: a usage error, nothing read.
    for template in (str(secret), "../secret.txt"):
        p = apply_file(cli, root, job / "m.json", json.dumps(render("out.txt", template)))
        one_line(p, 2, b"outside the watched roots and the manifest's directory")
    # Inside the root, but through a symlink out of it (the file, or a directory on the way).
    (root / "link.tpl").symlink_to(secret)
    one_line(apply(cli, root, render("out.txt", "link.tpl")), 1, b"is a symlink")
    (tmp_path / "tdir").mkdir()
    (tmp_path / "tdir" / "t.tpl").write_text("outside")
    (root / "tdir").symlink_to(tmp_path / "tdir")
    one_line(apply(cli, root, render("out.txt", "tdir/t.tpl")), 1,
             b"a component is a symlink or not a directory")
    # A device (root can make one): refused before it is opened.
    if os.geteuid() == 0:
        os.mknod(root / "null.tpl", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        one_line(apply(cli, root, render("out.txt", "null.tpl")), 1,
                 b"is a character device, not a regular file")
    # Too big (sparse, so cheap to make): the cap is in the message.
    with open(root / "big.tpl", "wb") as f:
        f.truncate(17 * 1024 * 1024)
    one_line(apply(cli, root, render("out.txt", "big.tpl")), 1, b"larger than 16 MiB")
    assert not (root / "out.txt").exists()
    assert b"not for the tree" not in b"".join(
        p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
        and p.name != "big.tpl" and not stat.S_ISCHR(p.lstat().st_mode))
    # A template beside the manifest, or in the root, is fine.
    (job / "t.tpl").write_text("Hi $who from the job")
    p = apply_file(cli, root, job / "m.json", json.dumps(render("a.txt", str(job / "t.tpl"))))
    assert p.returncode == 0, p.stderr
    # Also when the manifest's directory is reached through a symlink.
    (tmp_path / "joblink").symlink_to(job)
    p = apply_file(cli, root, tmp_path / "joblink" / "m2.json",
                   json.dumps(render("c.txt", str(tmp_path / "joblink" / "t.tpl"))))
    assert p.returncode == 0, p.stderr
    (root / "sub").mkdir()
    (root / "sub" / "t.tpl").write_text("Hi $who")
    assert apply(cli, root, render("b.txt", "sub/t.tpl")).returncode == 0
    assert (root / "a.txt").read_text() == "Hi you from the job"
    assert (root / "b.txt").read_text() == "Hi you"


def test_templates_have_a_time_and_memory_budget(cli: Cli, root: Path) -> None:
    # 500,000 placeholders compile in linear time (counting lines from the start for each
    # one took hours), and a render that would be 70 M characters is refused unbuilt.
    big = {"operations": [{"op": "render", "path": "many.txt", "template": "$a\n" * 500_000,
                           "vars": {"a": "x"}}]}
    assert apply(cli, root, big, timeout=60).returncode == 0
    assert (root / "many.txt").read_bytes() == b"x\n" * 500_000
    huge = {"operations": [{"op": "render", "path": "huge.txt", "template": "$a" * 100,
                            "vars": {"a": "x" * 700_000}}]}
    one_line(apply(cli, root, huge), 1, b"would be longer than 67,108,864 characters")
    assert not (root / "huge.txt").exists()


# ============================================================================ 14. commands
def _checker_rules(root: Path, tmp_path: Path, *, stdin: bool = False,
                   on_invalid: str = "alert") -> Path:
    script = tmp_path / "check.py"
    script.write_text(CHECKER)
    argv = [sys.executable, str(script), "{path}", *(["-"] if stdin else [])]
    extra = ", stdin = true" if stdin else ""
    rules = root / RULE_FILE
    rules.write_text(f'[[rule]]\npaths = ["*.cfg"]\non_invalid = "{on_invalid}"\n'
                     f'validators = [{{ command = {json.dumps(argv)}{extra} }}]\n')
    return rules


@pytest.mark.parametrize("stdin", [False, True], ids=["copy", "stdin"])
def test_command_validators_check_the_new_content(cli: Cli, root: Path, tmp_path: Path,
                                                   stdin: bool) -> None:
    cli.run("trust", str(_checker_rules(root, tmp_path, stdin=stdin)), check=True)
    target = root / "app.cfg"

    def write(content: str) -> subprocess.CompletedProcess[bytes]:
        return apply(cli, root, {"operations": [{"op": "write", "path": "app.cfg",
                                                 "content": content}]})

    # A new file: there is nothing on disk to check, the content is what counts.
    assert write("clean\n").returncode == 0, write("clean\n").stderr
    # The forbidden word is refused where it is, naming the real file...
    one_line(write("ok\n  FORBIDDEN\n"), 1, f"{target}:2:3: forbidden word".encode())
    assert target.read_text() == "clean\n"
    # ...and the next clean write is not judged by what is on disk.
    assert write("clean again\n").returncode == 0
    assert target.read_text() == "clean again\n"
    assert b".~guardian" not in b"".join(p.name.encode() for p in root.iterdir())


def test_command_validators_through_the_daemon(cli: Cli, root: Path, tmp_path: Path,
                                               watch) -> None:
    cli.run("trust", str(_checker_rules(root, tmp_path, stdin=True)), check=True)
    (root / "app.cfg").write_text("clean\n")
    w = watch(root)
    # A batch inside the daemon checks the new content.
    p = apply(cli, root, {"operations": [{"op": "write", "path": "app.cfg",
                                          "content": "x\n FORBIDDEN\n"}]})
    one_line(p, 1, f"{root / 'app.cfg'}:2:2: forbidden word".encode())
    p = apply(cli, root, {"operations": [{"op": "write", "path": "new.cfg",
                                          "content": "fine\n"}]})
    assert p.returncode == 0, p.stderr
    # And a write the watcher sees: the version it stored is what the command reads.
    m = w.mark()
    (root / "app.cfg").write_text("a\nb\nc FORBIDDEN\n")
    alert = w.wait(lambda e: e["event"] == "alert" and e["kind"] == "invalid", start=m,
                   what="an invalid alert")
    assert f"{root / 'app.cfg'}:3:3: forbidden word" in alert["message"]
    assert w.stop() == 0


def test_command_problems_without_a_place_print_no_zeros(cli: Cli, root: Path,
                                                         tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("print('nothing useful'); raise SystemExit(3)\n")
    rules = root / RULE_FILE
    rules.write_text('[[rule]]\npaths = ["*.cfg"]\nvalidators = [{ command = '
                     f'{json.dumps([sys.executable, str(script), "{path}"])} }}]\n')
    cli.run("trust", str(rules), check=True)
    (root / "f.cfg").write_text("x\n")
    p = cli.run("validate", str(root / "f.cfg"), cwd=root)
    assert p.returncode == 1
    assert p.stdout.decode() == (f"{root / 'f.cfg'}: command exited with status 3: "
                                 "nothing useful [command]\n")
    p = apply(cli, root, {"operations": [{"op": "write", "path": "g.cfg", "content": "y"}]})
    err = one_line(p, 1, b"command exited with status 3")
    assert ":0:0" not in err and f"{root / 'g.cfg'}: command exited" in err


# ============================================================================ 17. exit 2
@pytest.mark.parametrize(("args", "needle"), [
    (["show", "a.txt", "--at", "@1e20"], b"out of range"),
    (["show", "a.txt", "--at", "99999999999d"], b"out of range"),
    (["show", "a.txt", "--at", "@inf"], b"not a time"),
    (["show", "a.txt", "--version", "9" * 30], b"too large"),
    (["log", "-n", "9" * 30], b"too large"),
    (["log", "-n", "-1"], b"must be at least 0"),
    (["gc", "--keep-days", "nan"], b"--keep-days"),
    (["gc", "--keep-days", "1e300"], b"--keep-days"),
    (["gc", "--keep-versions", "9" * 30], b"too large"),
    (["bench", "--dir", "/nonexistent"], b"/nonexistent"),
    (["watch", ".", "--poll-interval", "nan"], b"--poll-interval"),
])
def test_huge_and_nan_numbers_are_usage_errors(cli: Cli, root: Path, args: list[str],
                                               needle: bytes) -> None:
    (root / "a.txt").write_text("x")
    cli.run("snapshot", check=True, cwd=root)
    one_line(cli.run(*args, cwd=root, timeout=30, store=args[0] != "bench"), 2, needle)


DEEP_JSON = ('{"operations": [{"op": "render", "path": "x", "template": "$a", "vars": {"a": '
             + "[" * 100_000 + "]" * 100_000 + "}}]}")


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("m.json", '{"operations": [{"op": "write", "path": "a\\u0000b", "content": "x"}]}',
     b"path contains a NUL character"),
    ("m.json", '{"operations": [{"op": "write", "path": "a\\ud800", "content": "x"}]}',
     b"path has a lone surrogate U+D800"),
    ("m.json", '{"operations": [{"op": "write", "path": "a.txt", "content": "a\\udfff"}]}',
     b"content has a lone surrogate U+DFFF"),
    ("m.json", '{"operations": [{"op": "edit", "path": "a.txt", "old": "x", "new": "\\ud800"}]}',
     b"new has a lone surrogate"),
    ("m.json", json.dumps({"operations": [{"op": "write", "path": "a/" * 3000 + "x",
                                           "content": "x"}]}), b"at most 4096"),
    ("m.json", json.dumps({"operations": [{"op": "write", "path": "n" * 256, "content": "x"}]}),
     b"a component of 256 bytes; at most 255"),
    ("m.json", DEEP_JSON, b"nested more than 64 levels"),
    ("m.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n", b"nested more than 64 levels"),
    ("m.yaml", "x: " + "[" * 5000 + "]" * 5000 + "\n", b"nest"),
    ("m.yaml", "operations:\n" + "".join(" " * i + "-\n" for i in range(200)) + "x\n",
     b"nested more than 64 levels"),
    ("m.yaml", "a: &a [x, x]\nb: &b [*a, *a]\noperations: []\n", b"aliases"),
    ("m.json", '{"operations": [{"op": "write", "path": "a.txt", "content": "x", "mode": '
     + "7" * 5000 + "}]}", b"more than 4300 digits"),
    ("m.json", '{"operations": [{"op": "write", "path": "a.txt", "content": "x"}], '
     '"lock_timeout": NaN}', b"lock_timeout"),
    ("m.json", '{"operations": [{"op": "write", "path": "a.txt", "content": "x"}], '
     '"session": "s\\ud800"}', b"session"),
])
def test_bad_manifests_are_one_line_usage_errors(cli: Cli, root: Path, tmp_path: Path,
                                                 name: str, text: str, needle: bytes) -> None:
    p = apply_file(cli, root, tmp_path / "job" / name, text)
    one_line(p, 2, needle)
    assert list(root.iterdir()) == []


def test_a_manifest_too_big_or_endless_is_refused(cli: Cli, root: Path) -> None:
    p = cli.run("apply", "/dev/zero", "--root", str(root), cwd=root, timeout=30)
    one_line(p, 2, b"larger than 16 MiB")


def test_apply_says_so_when_the_daemon_dies_mid_batch(cli: Cli, root: Path, watch,
                                                      env: dict[str, str]) -> None:
    (root / "a.txt").write_text("old")
    w = watch(root, env=dict(env, GUARDIAN_FAULT="batch.committed:kill"))
    p = apply(cli, root, {"operations": [{"op": "write", "path": "a.txt", "content": "new"}]})
    one_line(p, 1, b"the daemon stopped while applying the batch", b"guardian recover")
    w.proc.wait(20)
    out = cli.json("recover", cwd=root)
    assert [(b["was"], b["outcome"]) for b in out["batches"]] == [("committed", "completed")]
    assert (root / "a.txt").read_text() == "new"
    assert cli.log(root / "a.txt")[0]["sha256"] == sha256(b"new")


# ============================================================================ 18. messages
def test_trust_revoke_says_when_nothing_was_trusted(cli: Cli, root: Path) -> None:
    rules = root / RULE_FILE
    rules.write_text('[[rule]]\npaths = ["*.cfg"]\nvalidators = [{ command = ["true"] }]\n')
    cli.run("trust", str(rules), check=True)
    first = cli.run("trust", str(rules), "--revoke", check=True).stdout.decode()
    assert first.startswith("revoked trust in")
    again = cli.run("trust", str(rules), "--revoke", check=True).stdout.decode()
    assert again == f"{rules} was not trusted; nothing to revoke\n"
    assert cli.json("trust", str(rules), "--revoke")["changed"] is False
    # A rule file that is gone can still be revoked (its entry would stay forever).
    cli.run("trust", str(rules), check=True)
    rules.unlink()
    assert cli.json("trust", str(rules), "--revoke")["changed"] is True


def test_usage_errors_point_at_the_commands_own_help(cli: Cli, root: Path) -> None:
    for args, command in ((["log", "--bogus"], "log"), (["apply", "m.json", "-x"], "apply"),
                          (["show", "a", "b"], "show")):
        err = one_line(cli.run(*args, cwd=root), 2)
        assert err.startswith(f"guardian {command}: error:"), err
        assert f"(see guardian {command} --help)" in err, err


def test_manifest_operations_are_numbered_from_1(cli: Cli, root: Path) -> None:
    manifest = {"operations": [{"op": "write", "path": "a.txt", "content": "1"},
                               {"op": "edit", "path": "missing.txt", "old": "x", "new": "y"}]}
    p = apply(cli, root, manifest)
    one_line(p, 1, b"operation 2 (edit missing.txt)")
    p = apply(cli, root, manifest, "--json")
    assert json.loads(p.stdout)["error"]["operation"] == 2
    bad = {"operations": [{"op": "zap", "path": "x"}]}
    one_line(apply(cli, root, bad), 2, b"operation 1: op must be one of")


def test_a_target_outside_the_root_is_a_usage_error(cli: Cli, root: Path,
                                                    tmp_path: Path) -> None:
    for path in ("../x.txt", "sub/../../x.txt"):
        p = apply(cli, root, {"operations": [{"op": "write", "path": path, "content": "x"}]},
                  "--json")
        assert p.returncode == 2, p.stderr
        assert json.loads(p.stdout)["error"]["category"] == "permission"
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    p = apply(cli, root, {"operations": [{"op": "write", "path": "link/x", "content": "x"}]})
    one_line(p, 2, b"outside the watched roots")
    assert not (tmp_path / "x.txt").exists() and list((tmp_path / "elsewhere").iterdir()) == []


def test_yaml_manifests_are_accepted(cli: Cli, root: Path, tmp_path: Path) -> None:
    yaml_text = ("operations:\n  - op: write\n    path: y.txt\n    content: from yaml\n"
                 "  - {op: write, path: m.txt, mode: 0600, content: octal}\n")
    for name in ("m.yaml", "m.yml"):
        p = apply_file(cli, root, tmp_path / name, yaml_text)
        assert p.returncode == 0, p.stderr
    assert (root / "y.txt").read_text() == "from yaml"
    assert stat.S_IMODE((root / "m.txt").stat().st_mode) == 0o600
    p = cli.run("apply", "-", "--root", str(root), cwd=root,
                input=yaml_text.replace("from yaml", "via stdin").encode())
    assert p.returncode == 0, p.stderr
    assert (root / "y.txt").read_text() == "via stdin"
    # Errors say which format was expected, and where.
    one_line(apply_file(cli, root, tmp_path / "bad.yaml", "operations:\n  - op: write\n"
                        "   path: x\n"), 2, b"bad.yaml:3:4: invalid YAML")
    one_line(apply_file(cli, root, tmp_path / "bad.toml", "op = \n"), 2, b"invalid TOML")
    one_line(apply_file(cli, root, tmp_path / "bad.txt", "op write\n"), 2,
             b"a manifest is JSON, TOML or YAML")


def test_validate_counts_each_file_once(cli: Cli, root: Path) -> None:
    (root / "c.json").write_text("{}")
    (root / "d").mkdir()
    (root / "d" / "e.json").write_text("{")
    p = cli.run("validate", ".", "c.json", "./c.json", "d", cwd=root)
    assert p.returncode == 1
    assert p.stderr.decode().strip().endswith("2 files checked, 1 invalid"), p.stderr
    assert p.stdout.decode().count("e.json:") == 1
    out = json.loads(cli.run("validate", ".", "c.json", "d", "--json", cwd=root).stdout)
    assert sorted(os.path.basename(f["path"]) for f in out["files"]) == ["c.json", "e.json"]


def test_limits_mean_the_same_for_log_and_alerts(cli: Cli, root: Path, watch) -> None:
    (root / RULE_FILE).write_text('[[rule]]\npaths = ["*.json"]\nvalidators = ["json"]\n'
                                  'on_invalid = "alert"\n')
    target = root / "c.json"
    target.write_text("{}")
    w = watch(root)
    for n in range(3):
        m = w.mark()
        target.write_text("{" * (n + 1))
        w.wait(lambda e: e["event"] == "alert" and e["kind"] == "invalid", start=m,
               what="an invalid alert")
    assert w.stop() == 0
    versions = cli.log(target)
    assert len(versions) == 4
    assert len(cli.json("log", str(target), "-n", "0")["versions"]) == 4
    assert len(cli.json("log", str(target), "-n", "2")["versions"]) == 2
    alerts = cli.json("alerts", "-n", "0")["alerts"]
    # Alerts are deduplicated: the three invalid writes are one alert counted three times.
    assert sum(a["count"] for a in alerts if a["kind"] == "invalid") == 3
    assert len(cli.json("alerts", "-n", "1")["alerts"]) == 1
    for command in ("log", "alerts"):
        one_line(cli.run(command, "-n", "-1", cwd=root), 2, b"must be at least 0")
        assert b"0 = all" in cli.run(command, "--help", store=False).stdout

