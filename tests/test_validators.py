"""Validators: real files from this interpreter's standard library and site-packages must
pass, and every kind of invalid input must fail at the line and column a user would see.

Nothing is mocked: inputs are real bytes (written to real files where the path matters:
package checks, commands, schemas). The timeout and error handling of ``run`` are exercised
with tiny validators registered through the documented ``register`` hook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from guardian.validation import validators
from guardian.validation.validators import (
    Problem,
    Result,
    for_path,
    get,
    names,
    register,
    run,
    unregister,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PURELIB = Path(sysconfig.get_paths()["purelib"])


def errors(result: Result) -> list[tuple[str, int | None, int | None]]:
    """(message, line, column) of each error: what a user would see."""
    return [(p.message, p.line, p.column) for p in result.problems if p.severity == "error"]


def only_error(result: Result) -> Problem:
    errs = [p for p in result.problems if p.severity == "error"]
    assert len(errs) == 1, result
    return errs[0]


def check(name: str, data: bytes | str, path: str = "file", **options: Any) -> Result:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    result = run(name, raw, path, options)
    assert result.skipped is None, result
    return result


def stdlib_files(pattern: str) -> list[Path]:
    """Files of the standard library proper (not the site-packages directory inside it)."""
    return sorted(p for p in STDLIB.rglob(pattern)
                  if p.relative_to(STDLIB).parts[0] != "site-packages")


def sample(files: list[Path], count: int) -> list[Path]:
    """An even, deterministic spread over the sorted list."""
    step = max(1, len(files) // count)
    return files[::step]


# ============================================================================= registry
def test_names_and_unknown_validator() -> None:
    assert names() == ["command", "ini", "json", "markdown", "python", "schema", "text",
                       "toml", "yaml"]
    with pytest.raises(KeyError) as e:
        get("jsonn")
    message = e.value.args[0]
    assert message.startswith("unknown validator 'jsonn'; known: ")
    for name in names():
        assert name in message
    # run() never raises: the same message becomes a problem.
    assert errors(run("jsonn", b"{}", "x.json")) == [(message, None, None)]


@pytest.mark.parametrize(("path", "expected"), [
    ("a/b.py", "python"), ("b.pyi", "python"), ("x.json", "json"), ("X.JSON", "json"),
    ("c.yaml", "yaml"), ("c.yml", "yaml"), ("pyproject.toml", "toml"), ("tox.ini", "ini"),
    ("setup.cfg", "ini"), ("README.md", "markdown"), ("notes.markdown", "markdown"),
    ("Makefile", "text"), ("data.csv", "text"), (".bashrc", "text"), ("a.json.bak", "text"),
])
def test_for_path(path: str, expected: str) -> None:
    assert for_path(path) == [expected]


def test_every_validator_is_registered_under_its_name() -> None:
    for name in names():
        assert get(name).name == name


def test_importing_the_package_imports_no_parser() -> None:
    code = ("import sys, guardian.validation.validators as v; v.for_path('a.yaml'); "
            "print(sorted(m for m in ('yaml', 'jsonschema', 'tomllib', 'configparser') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_result_ok_ignores_warnings() -> None:
    assert Result("x", (Problem("long line", 1, 1, "warning"),)).ok
    assert not Result("x", (Problem("bad", 1, 1),)).ok
    assert Result("x", skipped="too large").ok
    assert Result("x", (Problem("bad", 2, 3),)).to_json() == {
        "validator": "x", "ok": False, "skipped": None,
        "problems": [{"message": "bad", "line": 2, "column": 3, "severity": "error"}]}


def test_run_size_limit() -> None:
    data = b"{}" + b" " * 100
    assert run("json", data, "x.json", {"max_bytes": 10}).skipped == \
        "not validated: too large (102 bytes > 10 bytes limit)"
    assert run("json", data, "x.json", max_bytes=10).skipped == \
        "not validated: too large (102 bytes > 10 bytes limit)"
    assert run("json", data, "x.json", {"max_bytes": 10}, max_bytes=1000).ok
    assert run("json", data, "x.json").skipped is None  # default: 20 MiB
    assert run("json", data, "x.json", {"max_bytes": "1KiB"}).skipped is None
    assert run("json", b" " * 2000, "x.json", {"max_bytes": "1 KB"}).skipped == \
        "not validated: too large (2.0 KiB > 1000 bytes limit)"
    assert validators.DEFAULT_MAX_BYTES == 20 * 1024 * 1024
    assert validators.MAX_BYTES["python"] == 4 * 1024 * 1024  # the slow parsers: less
    for bad in ("big", -1, True, 1.5):
        assert errors(run("json", data, "x.json", {"max_bytes": bad})) == [
            (f"invalid option: max_bytes must be a size such as 5MiB or a whole number of "
             f"bytes, not {bad!r}", None, None)]
    assert errors(run("json", data, "x.json", {"timeout": "soon"})) == [
        ("invalid option: timeout must be a positive number of seconds, not 'soon'", None, None)]


class _Slow:
    """Blocks until released: exercises run()'s timeout without sleeping in the test."""

    name = "test-slow"

    def __init__(self) -> None:
        self.release = threading.Event()

    def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result:
        self.release.wait(30)
        return Result(self.name)


class _Broken:
    name = "test-broken"

    def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result:
        raise RuntimeError("boom\nsecond line")


class _WrongType:
    name = "test-wrong"

    def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result:
        return "fine"  # type: ignore[return-value]


@pytest.fixture
def registered() -> Iterator[list[str]]:
    added: list[str] = []
    yield added
    for name in added:
        unregister(name)


def test_run_timeout_abandons_the_validator(registered: list[str]) -> None:
    slow = _Slow()
    register(slow)
    registered.append(slow.name)
    assert slow.name in names()
    start = time.monotonic()
    result = run(slow.name, b"x", "x", {}, timeout=0.2)
    assert time.monotonic() - start < 2
    assert result == Result(slow.name, skipped="not validated: timed out after 0.2s")
    assert result.ok  # not validated is not invalid: callers decide what a skip means
    slow.release.set()


def test_run_turns_exceptions_into_problems(registered: list[str]) -> None:
    for v in (_Broken(), _WrongType()):
        register(v)
        registered.append(v.name)
    assert errors(run("test-broken", b"x", "x")) == [
        ("internal validator error: RuntimeError: boom second line", None, None)]
    assert errors(run("test-broken", b"x", "x", timeout=None)) == [
        ("internal validator error: RuntimeError: boom second line", None, None)]
    assert errors(run("test-wrong", b"x", "x")) == [
        ("internal validator error: test-wrong returned str, not a Result", None, None)]


def test_register_overrides_and_unregister_restores(registered: list[str]) -> None:
    class Strict:
        name = "json"

        def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result:
            return Result("json", (Problem("always wrong"),))

    register(Strict())
    registered.append("json")
    assert errors(run("json", b"{}", "x.json")) == [("always wrong", None, None)]
    unregister("json")
    assert run("json", b"{}", "x.json").ok


def test_a_skip_known_from_the_path_is_not_asked_per_file(registered: list[str],
                                                          tmp_path: Path) -> None:
    """A validator's skip_for_path is asked once per rule outcome and extension; files it
    skips are never handed to it, other files are, and a validator registered later counts
    at once."""
    from guardian.rules.rulefiles import RuleSet
    from guardian.validation.check import check

    class Picky:
        name = "text"
        asked: list[str] = []  # noqa: RUF012
        seen: list[str] = []  # noqa: RUF012

        def skip_for_path(self, path: str, options: Mapping[str, Any]) -> str | None:
            self.asked.append(path)
            return "not for me" if path.endswith(".skipme") else None

        def validate(self, data: bytes, path: str, options: Mapping[str, Any]) -> Result:
            self.seen.append(path)
            return Result("text", (Problem("always wrong"),))

    picky = Picky()
    register(picky)
    registered.append("text")
    rules = RuleSet(str(tmp_path))
    verdicts = [check(rules.effective(f"d/f{i}.skipme"), b"x", f"d/f{i}.skipme")
                for i in range(50)]
    assert {v.valid for v in verdicts} == {None}
    assert verdicts[0].results == (Result("text", skipped="not for me"),)
    assert check(rules.effective("d/a.notes"), b"x", "d/a.notes").valid is False
    assert picky.seen == ["d/a.notes"] and len(picky.asked) == 2
    unregister("text")
    registered.remove("text")
    assert check(rules.effective("d/f0.skipme"), b"x", "d/f0.skipme").valid is True
    # The built-in text validator skips binary extensions by the path alone, as run() does.
    assert check(rules.effective("d/x.png"), b"plain", "d/x.png").results == (
        run("text", b"plain", "d/x.png"),)
    assert run("text", b"plain", "d/x.png").skipped == "binary file (.png file)"


GARBAGE = [b"", b"\x00", b"\xff\xfe\xfd", b"\x00" * 64 + b"\xff", bytes(range(256)),
           b"[{(" * 2000, b"\xef\xbb\xbf", b"---\n" * 50, b"\r\r\r\n", b"\\u" * 100]


@pytest.mark.parametrize("name", ["python", "json", "yaml", "toml", "ini", "markdown", "text",
                                  "schema", "command"])
def test_validators_never_raise(name: str, tmp_path: Path) -> None:
    v = get(name)
    for data in GARBAGE:
        for options in ({}, {"duplicate_keys": 3, "max_depth": -1, "encoding": 5,
                             "allow_no_value": "yes", "command": 5, "schema": 7}):
            result = v.validate(data, str(tmp_path / "f.json"), options)
            assert isinstance(result, Result)
            assert all(isinstance(p.message, str) and "\n" not in p.message
                       for p in result.problems)


# ============================================================================= python
# The standard library's intentionally broken files, excluded from the "must compile" sample
# and checked below as real-world invalid input: lib2to3's test data is Python 2 (print
# statements, 0777 literals), test/**/badsyntax_*.py and test/tokenizedata/bad_coding*.py
# exist to fail (bad __future__ imports, bad encodings). Everything else in the standard
# library compiles on its own interpreter.
def _intentionally_broken(p: Path) -> bool:
    rel = p.relative_to(STDLIB).as_posix()
    return (rel.startswith("lib2to3/tests/data/") or p.name.startswith("badsyntax_")
            or p.name.startswith("bad_coding"))


def test_python_standard_library_compiles() -> None:
    files = [p for p in stdlib_files("*.py") if not _intentionally_broken(p)]
    chosen = sample(files, 250)
    assert len(chosen) >= 200
    # Relative imports in real packages, including in __init__.py files.
    chosen += [p for p in (STDLIB / "json" / "__init__.py", STDLIB / "json" / "decoder.py",
                           STDLIB / "concurrent" / "futures" / "__init__.py",
                           STDLIB / "importlib" / "metadata" / "__init__.py") if p.exists()]
    for p in chosen:
        result = run("python", p.read_bytes(), str(p))
        assert result.ok, (p, result)


def test_python_standard_library_broken_files_fail_with_a_location() -> None:
    broken = [p for p in stdlib_files("*.py")
              if p.name.startswith(("badsyntax_", "bad_coding"))]
    if not broken:
        pytest.skip("this Python ships without its test package")
    for p in broken:
        problem = only_error(run("python", p.read_bytes(), str(p)))
        assert problem.line is not None and problem.line >= 1, (p, problem)
        assert not problem.message.startswith("(unicode error)"), problem


@pytest.mark.parametrize(("source", "message", "line", "column"), [
    (b"def f(:\n    pass\n", "invalid syntax", 1, 7),
    (b"x = 1\nreturn 5\n", "'return' outside function", 2, 1),
    (b"nonlocal x\n", "nonlocal declaration not allowed at module level", 1, 1),
    (b"def f(a, a): pass\n", "duplicate argument 'a' in function definition", 1, 10),
    # End-of-file cases: the column points at or just after the last character.
    (b"x = (1,\n", "'(' was never closed", 1, 5),
    (b"def f():\n", "expected an indented block after function definition on line 1", 1, 9),
    (b"if True:", "expected an indented block after 'if' statement on line 1", 1, 9),
    (b'x = 1\ns = """abc\n', "unterminated triple-quoted string literal (detected at line 2)",
     2, 5),
    (b"x = 'abc\n", "unterminated string literal (detected at line 1)", 1, 5),
    (b"  x = 1\n", "unexpected indent", 1, 2),  # where CPython points: the indentation
    (b"def f():\n\treturn 1\n        return 2\n",
     "inconsistent use of tabs and spaces in indentation", 3, 1),
    (b"print 'hi'\n", "missing parentheses in call to 'print'. Did you mean print(...)?", 1, 1),
    # Columns count characters, not bytes.
    ("s = 'é€' + )\n".encode(), "unmatched ')'", 1, 12),
    (b"x = 1\ny = 2 +\n", "invalid syntax", 2, 8),
])
def test_python_syntax_errors(source: bytes, message: str, line: int, column: int) -> None:
    assert errors(check("python", source, "/nonexistent/mod.py")) == [(message, line, column)]


def test_python_null_bytes_and_encodings() -> None:
    assert errors(check("python", b"x = 1\ny = 'a\x00b'\n", "m.py")) == [
        ("source code cannot contain null bytes", 2, 7)]
    # Invalid UTF-8 (the default encoding): the exact byte, not CPython's approximate offset.
    assert errors(check("python", b"x = 1\ny = '\xc3'\n", "m.py")) == [
        ("invalid UTF-8: invalid continuation byte (byte c3)", 2, 6)]
    assert errors(check("python", b"x = 1\ny = '\xe2\x82x'\n", "m.py")) == [
        ("invalid UTF-8: invalid continuation byte (byte e2 82)", 2, 6)]
    assert errors(check("python", b"\xff = 1\n", "m.py")) == [
        ("invalid UTF-8: invalid start byte (byte ff)", 1, 1)]
    # PEP 263: the declared encoding is honoured, and an unknown one is reported on its line.
    assert check("python", b"# -*- coding: latin-1 -*-\nx = '\xe9'\n", "m.py").problems == ()
    assert check("python", "# coding: koi8-r\nx = 'привет'\n".encode("koi8-r"), "m.py").ok
    assert errors(check("python", b"#!/usr/bin/env python\n# coding: uft-8\nx = 1\n", "m.py")) \
        == [("unknown encoding: uft-8", 2, None)]
    assert check("python", b"\xef\xbb\xbfx = 1\n", "m.py").ok  # a UTF-8 BOM is fine


def test_python_compile_warnings_are_warnings() -> None:
    result = check("python", b"import re\n\nr = re.compile('\\d+')\nok = x is 1\n", "m.py")
    assert result.ok
    assert [(p.line, p.severity) for p in result.problems] == [(3, "warning"), (4, "warning")]
    assert result.problems[0].message == "invalid escape sequence '\\d'"


def test_python_too_deep_to_compile() -> None:
    for source in (b"x = " + b"-" * 1_000_000 + b"1\n", b"x = " + b"1+" * 100_000 + b"1\n"):
        problem = only_error(check("python", source, "m.py"))
        assert problem.message.startswith("code too deeply nested to compile")
    assert errors(check("python", b"x = " + b"(" * 300 + b")" * 300, "m.py")) == [
        ("too many nested parentheses", 1, 205)]


def _package(root: Path, *parts: str) -> Path:
    d = root
    for part in parts:
        d = d / part
        d.mkdir()
        (d / "__init__.py").write_bytes(b"")
    return d


def test_python_relative_import_outside_a_package(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    source = b"import os\n\ndef main():\n    from .helpers import run\n" \
             b"x = '\xc3\xa9'; from . import y\n"
    script.write_bytes(source)
    message = "relative import outside a package (no __init__.py beside this file)"
    # Columns count characters: "é" is one.
    assert errors(check("python", source, str(script))) == [(message, 4, 5), (message, 5, 10)]
    # The file need not exist yet (a pre-write check): its directory decides.
    assert errors(check("python", b"from . import y\n", str(tmp_path / "new.py"))) == [
        (message, 1, 1)]
    assert check("python", source, str(script), check_imports=False).ok


def test_python_relative_import_beyond_top_level(tmp_path: Path) -> None:
    pkg = _package(tmp_path, "pkg")
    sub = _package(pkg, "sub")
    ok = b"from . import a\nfrom .. import b\nfrom ..sub import c\n"
    assert check("python", ok, str(sub / "mod.py")).ok  # pkg.sub.mod: two levels exist
    too_far = b"from . import a\nif True:\n    from ...x import y\n"
    assert errors(check("python", too_far, str(sub / "mod.py"))) == [
        ("relative import beyond the top-level package (3 levels up from a package 2 deep)",
         3, 5)]
    assert errors(check("python", b"from .. import x\n", str(pkg / "mod.py"))) == [
        ("relative import beyond the top-level package (2 levels up from a package 1 deep)",
         1, 1)]
    # An __init__.py makes its own directory a package, even before it is written.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert check("python", b"from . import x\n", str(fresh / "__init__.py")).ok
    assert not check("python", b"from .. import x\n", str(fresh / "__init__.py")).ok


def test_python_namespace_portion_inside_a_package_is_not_judged(tmp_path: Path) -> None:
    # As in the standard library's test/test_import/data/: a directory without __init__.py
    # below a regular package is a namespace package portion (PEP 420).
    pkg = _package(tmp_path, "pkg")
    (pkg / "data" / "ns").mkdir(parents=True)
    assert check("python", b"from . import x\nfrom .... import y\n",
                 str(pkg / "data" / "ns" / "m.py")).ok


# ============================================================================= json
def test_json_real_files() -> None:
    files = stdlib_files("*.json") + sorted(PURELIB.rglob("*.json"))
    assert len(files) >= 10
    for p in files:
        assert check("json", p.read_bytes(), str(p)).problems == (), p


@pytest.mark.parametrize(("text", "message", "line", "column"), [
    ('{\n  "a": 1,\n}\n', "expecting property name enclosed in double quotes", 3, 1),
    ('[1, 2,]', "expecting value", 1, 7),
    ('// comment\n{}', "expecting value", 1, 1),
    ('{"a": 1 /* c */}', "expecting ',' delimiter", 1, 9),
    ('{"a" 1}', "expecting ':' delimiter", 1, 6),
    ('[1, 2', "expecting ',' delimiter", 1, 6),
    ('{"a": tru}', "expecting value", 1, 7),
    ('"a\tb"', "invalid control character", 1, 3),
    ('{} []', "extra data", 1, 4),
    ("{'a': 1}", "expecting property name enclosed in double quotes", 1, 2),
    ("", "empty document", 1, 1),
    (" \n\t\n", "empty document", 1, 1),
])
def test_json_syntax_errors(text: str, message: str, line: int, column: int) -> None:
    assert errors(check("json", text, "x.json")) == [(message, line, column)]


def test_json_rejects_nan_and_infinity() -> None:
    assert errors(check("json", '{"a": NaN,\n "b": [Infinity, -Infinity]}', "x.json")) == [
        ("NaN is not valid JSON (RFC 8259 has no NaN or Infinity)", 1, 7),
        ("Infinity is not valid JSON (RFC 8259 has no NaN or Infinity)", 2, 8),
        ("-Infinity is not valid JSON (RFC 8259 has no NaN or Infinity)", 2, 18)]


def test_json_duplicate_keys() -> None:
    text = '{\n  "name": 1,\n  "inner": {"name": 2, "x": 0, "x": 1},\n  "name": 3,\n' \
           '  "n\\u0061me": 4\n}'
    assert errors(check("json", text, "x.json", duplicate_keys="error")) == [
        ("duplicate key 'x' (first at line 3)", 3, 32),
        ("duplicate key 'name' (first at line 2)", 4, 3),
        ("duplicate key 'name' (first at line 2)", 5, 3)]  # compared after unescaping
    # Valid JSON (RFC 8259: names SHOULD be unique): a warning unless the rules say otherwise.
    warned = check("json", text, "x.json")
    assert warned.ok and [p.severity for p in warned.problems] == ["warning"] * 3
    assert check("json", text, "x.json", duplicate_keys="allow").problems == ()
    assert errors(check("json", text, "x.json", duplicate_keys="no")) == [
        ("invalid option: duplicate_keys must be one of error, warning, allow, not 'no'",
         None, None)]


def test_json_lone_surrogates() -> None:
    text = '["\\ud83d\\ude00 paired is fine",\n "\\ud800",\n "x\\ude00",\n' \
           ' {"\\udbff\\udbff": "high then high"}]'
    assert errors(check("json", text, "x.json")) == [
        ("unpaired surrogate escape in a string (not valid Unicode)", 2, 3),
        ("unpaired surrogate escape in a string (not valid Unicode)", 3, 4),
        ("unpaired surrogate escape in a string (not valid Unicode)", 4, 4)]
    assert check("json", '"\\\\ud800 is an escaped backslash"', "x.json").ok


def test_json_encoding() -> None:
    assert errors(check("json", b'{"a": 1,\n "b": "\xc3\xa9\xff"}', "x.json")) == [
        ("invalid UTF-8: invalid start byte (byte ff)", 2, 9)]
    assert errors(check("json", b'{"a": "\xed\xa0\x80"}', "x.json")) == [  # encoded surrogate
        ("invalid UTF-8: invalid continuation byte (byte ed)", 1, 8)]
    assert errors(check("json", b'\xef\xbb\xbf{"a": [1,]}', "x.json")) == [
        ("byte order mark at the start of the file (RFC 8259 forbids it)", 1, 1),
        ("expecting value", 1, 11)]
    assert errors(check("json", '{"é": [1,]}', "x.json")) == [("expecting value", 1, 10)]


def test_json_deep_nesting_does_not_crash() -> None:
    start = time.monotonic()
    deep = "[" * 100_000 + "]" * 100_000
    assert errors(check("json", deep, "x.json")) == [
        ("nesting too deep (over 1000 levels)", 1, 1001)]
    assert errors(check("json", "[" * 100_000, "x.json")) == [
        ("nesting too deep (over 1000 levels)", 1, 1001)]
    assert time.monotonic() - start < 5
    assert errors(check("json", '{"a": [[1]]}', "x.json", max_depth=2)) == [
        ("nesting too deep (over 2 levels)", 1, 8)]
    assert check("json", "[" * 500 + "]" * 500, "x.json").ok


def test_json_big_numbers_are_valid() -> None:
    assert check("json", "[" + "1" * 5000 + ", 1e400]", "x.json").ok


# ============================================================================= yaml
CLOUDFORMATION = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: A bucket and a topic
Parameters:
  Env: {Type: String, Default: dev}
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-${Env}-data"
      Tags:
        - {Key: env, Value: !Ref Env}
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Join ["-", [!Ref Env, topic]]
Outputs:
  BucketArn:
    Value: !GetAtt Bucket.Arn
  Conditional:
    Value: !If [IsProd, !GetAtt [Topic, TopicName], !Ref "AWS::NoValue"]
"""


def test_yaml_real_files() -> None:
    files = sorted(PURELIB.rglob("*.yaml")) + sorted(PURELIB.rglob("*.yml"))
    for p in files:
        assert check("yaml", p.read_bytes(), str(p)).problems == (), p
    assert check("yaml", CLOUDFORMATION, "template.yaml").problems == ()


def test_yaml_syntax_errors() -> None:
    assert errors(check("yaml", "a: 1\nb: [1, 2\nc: 3\n", "x.yaml")) == [
        ("did not find expected ',' or ']' (while parsing a flow sequence at line 2, "
         "column 4)", 3, 2)]
    assert errors(check("yaml", "a: b: c\n", "x.yaml")) == [
        ("mapping values are not allowed in this context", 1, 5)]
    assert errors(check("yaml", "- a\n- b\n c: d\n", "x.yaml")) == [
        ("mapping values are not allowed in this context", 3, 3)]
    assert errors(check("yaml", "a: 'open\n", "x.yaml")) == [
        ("found unexpected end of stream (while scanning a quoted scalar at line 1, "
         "column 4)", 2, 1)]
    assert errors(check("yaml", "x: &a {k: 1}\ny: *b\n", "x.yaml")) == [
        ("found undefined alias 'b'", 2, 4)]
    # YAML 1.2 lets an anchor be redefined (an alias refers to the latest; yaml-test-suite's
    # valid cases do it), though PyYAML refuses such a document.
    assert check("yaml", "a: &x 1\nb: &x 2\nc: *x\n", "x.yaml").problems == ()
    assert errors(check("yaml", "key: a\x01b\n", "x.yaml")) == [
        ("character U+0001 is not allowed in YAML", 1, 7)]
    assert errors(check("yaml", b"k: v\nkey: \xc3\xa9\xff\n", "x.yaml")) == [
        ("invalid UTF-8: invalid start byte (byte ff)", 2, 7)]


def test_yaml_duplicate_keys() -> None:
    text = "name: a\nnested:\n  x: 1\n  'x': 2\n  1: int\n  '1': str is another key\n" \
           "name: b\n"
    assert errors(check("yaml", text, "x.yaml", duplicate_keys="error")) == [
        ("duplicate key 'x' (first at line 3)", 4, 3),
        ("duplicate key 'name' (first at line 1)", 7, 1)]
    # Every document is checked; flow mappings too; an alias used as a key is located
    # where the alias is.
    multi = "a: 1\n---\nb: 1\nc: {b: 1, b: 2}\n---\n&k key: 1\n*k : 2\n"
    assert errors(check("yaml", multi, "x.yaml", duplicate_keys="error")) == [
        ("duplicate key 'b' (first at line 4)", 4, 11),
        ("duplicate key 'key' (first at line 6)", 7, 1)]
    # By default a warning (the file parses; yaml-test-suite's 2JQS repeats a key and is
    # valid); the strict preset makes it an error.
    warned = check("yaml", text, "x.yaml")
    assert warned.ok and [p.severity for p in warned.problems] == ["warning"] * 2
    assert check("yaml", text, "x.yaml", duplicate_keys="allow").problems == ()
    # Merge keys may repeat.
    assert check("yaml", "b: &b {x: 1}\nd:\n  <<: *b\n  <<: {y: 2}\n", "x.yaml",
                 duplicate_keys="error").problems == ()
    # Keys compare as YAML 1.2 reads them: `yes` is a string there, not a boolean.
    assert errors(check("yaml", "yes: 1\n'yes': 2\ntrue: 3\n'true': 4\n", "x.yaml",
                        duplicate_keys="error")) == [("duplicate key 'yes' (first at line 1)",
                                                      2, 1)]


def test_yaml_aliases_stay_shared() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                      strict=True))
    start = time.monotonic()
    assert check("yaml", laughs, "x.yaml").ok  # 10^9 values if expanded; composed: 90 nodes
    assert check("yaml", "&a [*a]\n", "x.yaml").ok  # recursive, and still fine to compose
    assert time.monotonic() - start < 2


def test_yaml_deep_nesting_does_not_crash_or_hang() -> None:
    start = time.monotonic()
    assert errors(check("yaml", "[" * 100_000 + "]" * 100_000, "x.yaml")) == [
        ("nesting too deep (over 1000 levels)", 1, 1001)]
    [(message, line, column)] = errors(check("yaml", "- " * 100_000 + "x\n", "x.yaml"))
    # Where exactly depends on who counts: this validator, or PyYAML >= 6.0.4's scanner.
    assert (message, line) == ("nesting too deep (over 1000 levels)", 1)
    assert column in (1999, 2001)
    assert time.monotonic() - start < 5
    assert check("yaml", "[" * 900 + "]" * 900, "x.yaml").ok


def test_yaml_utf16_with_bom() -> None:
    assert errors(check("yaml", "a: 1\na: 2\n".encode("utf-16"), "x.yaml",
                        duplicate_keys="error")) == [("duplicate key 'a' (first at line 1)", 2, 1)]


# ============================================================================= toml
def test_toml_real_files() -> None:
    data = STDLIB / "test" / "test_tomllib" / "data"
    files = sorted((data / "valid").rglob("*.toml")) + sorted(PURELIB.rglob("*.toml"))
    assert len(files) >= 3
    for p in files:
        assert check("toml", p.read_bytes(), str(p)).problems == (), p


def test_toml_standard_library_invalid_cases_fail_with_a_location() -> None:
    invalid = sorted((STDLIB / "test" / "test_tomllib" / "data" / "invalid").rglob("*.toml"))
    if not invalid:
        pytest.skip("this Python ships without its test package")
    for p in invalid:
        problem = only_error(check("toml", p.read_bytes(), str(p)))
        assert problem.line is not None and problem.column is not None, (p, problem)
        assert "(at " not in problem.message and problem.message[0].islower(), problem


@pytest.mark.parametrize(("text", "message", "line", "column"), [
    ("a = 1\nb = \n", "invalid value", 2, 5),
    ("[t]\nx = 1\nx = 2\n", "cannot overwrite a value", 3, 6),
    ("[t]\n[t]\n", "cannot declare ('t',) twice", 2, 3),
    ("a = [1,\n  2,,]\n", "invalid value", 2, 5),
    ('x = "\\ud800"\n', "escaped character is not a Unicode scalar value", 1, 12),
    # "at end of document": the position of the end.
    ('a = 1\nb = "abc', "unterminated string", 2, 9),
    ("\ufeffa = 1\nb = \n", "invalid value", 2, 5),  # after a byte order mark too
])
def test_toml_errors(text: str, message: str, line: int, column: int) -> None:
    assert errors(check("toml", text, "x.toml")) == [(message, line, column)]


def test_toml_encoding_depth_and_big_integers() -> None:
    assert errors(check("toml", b'a = 1\nb = "\xc3\xa9\xff"\n', "x.toml")) == [
        ("invalid UTF-8: invalid start byte (byte ff)", 2, 7)]
    assert errors(check("toml", "x = " + "[" * 100_000, "x.toml")) == [
        ("nesting too deep (arrays or inline tables)", None, None)]
    problem = only_error(check("toml", "x = " + "1" * 5000, "x.toml"))
    assert problem.message.startswith("exceeds the limit (4300 digits)")


# ============================================================================= ini
def test_ini_real_files() -> None:
    files = stdlib_files("*.ini") + sorted(PURELIB.glob("*.dist-info/entry_points.txt"))
    # .cfg is a free-for-all extension: turtledemo/turtle.cfg is "key = value" lines without
    # sections, read by turtle's own parser, so only real INI files are taken here.
    files += [p for p in (STDLIB / "site-packages" / "numpy" / "f2py" / "setup.cfg",)
              if p.exists()]
    assert len(files) >= 5
    for p in files:
        assert check("ini", p.read_bytes(), str(p)).problems == (), p


def test_ini_errors() -> None:
    assert errors(check("ini", "[a]\nx = 1\n\n[b]\ny = 2\n[a]\n", "x.ini")) == [
        ("duplicate section [a] (first at line 1)", 6, None)]
    assert errors(check("ini", "[a]\nName = 1\nother = 2\nname = 3\n", "x.ini")) == [
        ("duplicate option 'name' in section [a] (first at line 2)", 4, None)]
    assert errors(check("ini", "# settings\nx = 1\n[a]\n", "x.ini")) == [
        ("'x = 1' comes before any [section] header", 2, None)]
    assert errors(check("ini", "[a]\nx = 1\nno value here\n[b]\n;ok\n  = 3\n", "x.ini")) == [
        ("cannot parse 'no value here': expected 'name = value', 'name: value' or a "
         "[section] header", 3, None),
        ("cannot parse '= 3': expected 'name = value', 'name: value' or a [section] header",
         6, None)]
    assert check("ini", "[mysqld]\nskip-external-locking\n", "my.cnf", allow_no_value=True).ok
    assert errors(check("ini", b"[a]\nx = \xff\n", "x.ini")) == [
        ("invalid UTF-8: invalid start byte (byte ff)", 2, 5)]
    # Interpolation is off; continuation lines and comments are configparser's.
    assert check("ini", "[a]\nfmt = %(x)s 100%\nlong = one\n  two\n# c\n; c\n", "x.ini").ok


# ============================================================================= markdown
def test_markdown_real_files() -> None:
    files = stdlib_files("*.md") + sorted(PURELIB.rglob("*.md"))
    assert len(files) >= 5
    for p in files:
        assert check("markdown", p.read_bytes(), str(p)).problems == (), p


def test_markdown_fences() -> None:
    msg = "code fence {} is never closed (the rest of the file is code)"
    assert errors(check("markdown", "# Title\n\n```python\nx = 1\n", "a.md")) == [
        (msg.format("```"), 3, 1)]
    # A shorter fence, another character, or a closing "fence" with text does not close.
    assert errors(check("markdown", "text\n  ````\n```\n~~~~\n```` no\n", "a.md")) == [
        (msg.format("````"), 2, 3)]
    assert check("markdown", "~~~\n```\n~~~\n\n```js\n  ```  \n", "a.md").ok
    assert check("markdown", "``not a fence`\n    ```\nindented code\n", "a.md").ok
    assert check("markdown", "<!--\n```\n-->\n", "a.md").ok
    # The last of several fences is the one left open.
    assert errors(check("markdown", "```\na\n```\n\n~~~ sh\nb\n", "a.md")) == [
        (msg.format("~~~"), 5, 1)]


def test_markdown_front_matter() -> None:
    ok = "---\ntitle: Post\ntags: [a, b]\n---\n# Post\n\nText --- more.\n"
    assert check("markdown", ok, "a.md").problems == ()
    assert check("markdown", "+++\ntitle = 'Post'\n+++\n# Post\n", "a.md").problems == ()
    assert errors(check("markdown", "---\ntitle: a\ntitle: b\n---\n", "a.md",
                        duplicate_keys="error")) == [
        ("front matter (YAML): duplicate key 'title' (first at line 2)", 3, 1)]
    # YAML 1.2, as in a .yaml file: PyYAML refuses `[-]`'s opposite, a key with no text.
    assert check("markdown", "---\n: untitled\n---\n", "a.md").problems == ()
    assert errors(check("markdown", "---\ntags: [-]\n---\n", "a.md")) == [
        ("front matter (YAML): plain scalar cannot start with '-' followed by ,[]{}", 2, 8)]
    assert errors(check("markdown", "---\ntitle: [x\n...\n# Body\n", "a.md")) == [
        ("front matter (YAML): did not find expected ',' or ']' (while parsing a flow "
         "sequence at line 2, column 8)", 3, 1)]
    assert errors(check("markdown", "+++\ntitle = 1\ntitle = 2\n+++\n", "a.md")) == [
        ("front matter (TOML): cannot overwrite a value", 3, 10)]
    assert errors(check("markdown", "---\ntitle: a\n\n# Body\n", "a.md")) == [
        ("front matter opened here is never closed (no --- line)", 1, 1)]
    assert errors(check("markdown", b"# T\n\nsome \xff\n", "a.md")) == [
        ("invalid UTF-8: invalid start byte (byte ff)", 3, 6)]


# ============================================================================= text
def test_text_real_files() -> None:
    files = sample(stdlib_files("*.txt"), 100)
    assert files
    for p in files:
        assert check("text", p.read_bytes(), str(p)).problems == (), p
        # test/cjkencodings holds the same texts in Big5, EUC-JP, …: not UTF-8 by design.
        if "cjkencodings" not in p.parts:
            assert check("text", p.read_bytes(), str(p), encoding="utf-8").problems == (), p


def test_text_nul_and_encoding() -> None:
    assert errors(check("text", "line one\nnaïve\x00 text\n", "notes")) == [
        ("NUL byte in a text file", 2, 6)]
    assert check("text", b"latin-1 \xe9\n", "notes").ok  # no encoding required by default
    assert errors(check("text", b"ok\nlatin-1 \xe9\n", "notes", encoding="utf-8")) == [
        ("invalid UTF-8: invalid continuation byte (byte e9)", 2, 9)]
    assert errors(check("text", b"ends in \xe9", "notes", encoding="utf-8")) == [
        ("invalid UTF-8: unexpected end of data (byte e9)", 1, 9)]
    assert check("text", b"latin-1 \xe9\n", "notes", encoding="latin-1").ok
    assert errors(check("text", b"x", "notes", encoding="klingon")) == [
        ("invalid option: unknown encoding 'klingon'", None, None)]
    assert check("text", "UTF-16 text has NUL bytes\n".encode("utf-16"), "notes").ok


def test_text_binary_files_are_skipped() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    assert run("text", png, "logo").skipped == "binary file (PNG)"
    assert run("text", b"\x00\x01", "m.pyc").skipped == "binary file (.pyc file)"
    # A text file that merely starts like a signature is still text.
    assert errors(check("text", b"OTTO was here\x00", "notes")) == [
        ("NUL byte in a text file", 1, 14)]


def test_text_max_line_length() -> None:
    text = "short\n" + "x" * 30 + "\n" + "".join("y" * 25 + "\n" for _ in range(20))
    result = check("text", text, "notes", max_line_length=20)
    assert result.ok
    assert len(result.problems) == 10
    assert (result.problems[0].message, result.problems[0].line, result.problems[0].column,
            result.problems[0].severity) == ("line is 30 characters long (limit 20)", 2, 21,
                                             "warning")


# ============================================================================= schema
SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "servers": {"type": "array", "items": {
            "type": "object", "properties": {"port": {"type": "integer"},
                                             "since": {"type": "string"}}}},
    },
}


@pytest.fixture
def schema_file(tmp_path: Path) -> str:
    path = tmp_path / "config.schema.json"
    path.write_text(json.dumps(SCHEMA))
    return str(path)


def test_schema_json(schema_file: str) -> None:
    doc = '{\n  "name": "x",\n  "servers": [\n    {"port": 80},\n    {"port": "x"}\n  ]\n}\n'
    assert errors(check("schema", doc, "c.json", schema=schema_file)) == [
        ("/servers/1/port: 'x' is not of type 'integer'", 5, 14)]
    assert errors(check("schema", '{"servers": [], "extra": 1}', "c.json",
                        schema=schema_file)) == [
        ("(root): 'name' is a required property", 1, 1),
        ("(root): additional properties are not allowed ('extra' was unexpected)", 1, 1)]
    assert check("schema", '{"name": "ok"}', "c.json", schema=schema_file).problems == ()


def test_schema_yaml_and_toml(schema_file: str) -> None:
    doc = "name: !Ref Name\nservers:\n  - port: 80\n    since: 2024-01-01\n  - port: x\n"
    assert errors(check("schema", doc, "c.yaml", schema=schema_file)) == [
        ("/servers/1/port: 'x' is not of type 'integer'", 5, 11)]
    multi = "name: a\n---\nname: 1\n"
    assert errors(check("schema", multi, "c.yml", schema=schema_file)) == [
        ("document 2: /name: 1 is not of type 'string'", 3, 7)]
    toml = 'name = "a"\n[[servers]]\nport = "x"\nsince = 2024-01-01\n'
    assert errors(check("schema", toml, "c.toml", schema=schema_file)) == [
        ("/servers/0/port: 'x' is not of type 'integer'", None, None)]
    assert errors(check("schema", "name: 1\n", "c.conf", schema=schema_file,
                        format="yaml")) == [("/name: 1 is not of type 'string'", 1, 7)]


def test_schema_delegates_parse_errors(schema_file: str) -> None:
    assert errors(check("schema", '{"name": "a", "name": "b"}', "c.json", schema=schema_file,
                        duplicate_keys="error")) == [
        ("duplicate key 'name' (first at line 1)", 1, 15)]
    assert errors(check("schema", "name: [a\n", "c.yaml", schema=schema_file)) == [
        ("did not find expected ',' or ']' (while parsing a flow sequence at line 1, "
         "column 7)", 2, 1)]
    assert errors(check("schema", "name = \n", "c.toml", schema=schema_file)) == [
        ("invalid value", 1, 8)]


def test_schema_file_problems_name_the_schema(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.json")
    assert errors(check("schema", "{}", "c.json", schema=missing)) == [
        (f"cannot read schema {missing}: No such file or directory", None, None)]
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    problem = only_error(check("schema", "{}", "c.json", schema=str(broken)))
    assert problem.message.startswith(f"schema {broken} does not parse: ")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"type": 5}')
    problem = only_error(check("schema", "{}", "c.json", schema=str(wrong)))
    assert problem.message.startswith(f"schema {wrong} is not a valid JSON Schema: /type: ")
    assert errors(check("schema", "{}", "c.json")) == [
        ("invalid option: schema (a schema file path) or schema_data is required", None, None)]
    assert errors(check("schema", "{}", "c.txt", schema_data={})) == [
        ("invalid option: cannot tell the format of 'c.txt' from its extension: set format to "
         "json, yaml or toml", None, None)]


def test_schema_refs_are_local_only(tmp_path: Path) -> None:
    (tmp_path / "defs.json").write_text('{"$defs": {"port": {"type": "integer"}}}')
    local = tmp_path / "local.json"
    local.write_text('{"properties": {"p": {"$ref": "defs.json#/$defs/port"}}}')
    assert errors(check("schema", '{"p": "x"}', "c.json", schema=str(local))) == [
        ("/p: 'x' is not of type 'integer'", 1, 7)]
    remote = tmp_path / "remote.json"
    remote.write_text('{"properties": {"p": {"$ref": "https://example.invalid/s.json"}}}')
    problem = only_error(check("schema", '{"p": "x"}', "c.json", schema=str(remote)))
    assert problem.message.startswith(f"schema {remote}: cannot resolve a $ref")


def test_schema_error_cap_and_alias_bombs() -> None:
    many = "[" + ", ".join(['"x"'] * 100) + "]"
    result = check("schema", many, "c.json", schema_data={"items": {"type": "integer"}})
    assert len(result.problems) == 50
    assert (result.problems[0].message, result.problems[0].column) == (
        "/0: 'x' is not of type 'integer'", 2)
    assert result.problems[1].message == "/1: 'x' is not of type 'integer'"  # numeric order
    assert result.problems[-1].message == "51 more schema errors not shown"
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi",
                                                                      strict=True))
    problem = only_error(check("schema", laughs, "c.yaml", schema_data={"type": "object"}))
    assert problem.message == \
        "aliases expand to over 1000000 values; not checked against the schema"
    assert errors(check("schema", "&a [*a]\n", "c.yaml", schema_data={"type": "array"})) == [
        ("recursive alias (a collection contains itself); not checked against the schema",
         1, 1)]


# ============================================================================= command
def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_command_parses_locations(tmp_path: Path) -> None:
    target = tmp_path / "mod.py"
    target.write_text("x = 1\n")
    code = ("print('{path}:3:5: E1 something is wrong'); print('{path}:7: no column');"
            "print('other.py:1:1: in another file'); print('Found 3 errors.');"
            "raise SystemExit(1)")
    assert errors(check("command", b"", str(target), command=_py(code))) == [
        ("E1 something is wrong", 3, 5), ("no column", 7, None),
        ("other.py:1: in another file", None, None)]
    # Relative names are resolved from the command's directory (the file's, by default).
    rel = "print('mod.py:2:1: relative'); raise SystemExit(1)"
    assert errors(check("command", b"", str(target), command=_py(rel))) == [
        ("relative", 2, 1)]


def test_command_ruff(tmp_path: Path) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not os.access(ruff, os.X_OK):
        pytest.skip("ruff is not installed")
    target = tmp_path / "mod.py"
    target.write_text("x = 1\n")
    argv = [ruff, "check", "--isolated", "--select", "F", "--no-cache", "--quiet", "{path}"]
    # The content checked is the one given, not the file on disk (a write not yet made).
    result = check("command", b"import os\nx = 1\n", str(target), command=argv)
    assert [(p.line, p.column) for p in result.problems] == [(1, 8)]
    assert "F401" in result.problems[0].message
    assert check("command", b"x = 1\n", str(target), command=argv).problems == ()
    # With stdin = true, ruff reads the content and is told the real name.
    stdin = [ruff, "check", "--isolated", "--select", "F", "--no-cache", "--quiet",
             "--stdin-filename", "{path}", "-"]
    result = run("command", b"import os\n", str(target), {"command": stdin, "stdin": True})
    assert [(p.line, p.column) for p in result.problems] == [(1, 8)]


def test_command_outcomes(tmp_path: Path) -> None:
    target = str(tmp_path / "f.txt")
    assert check("command", b"", target, command=_py("print('fine')")).problems == ()
    assert check("command", b"", target, command="true").problems == ()
    lines = "; ".join(f"print('line {n}')" for n in range(30))
    problem = only_error(check("command", b"", target, command=_py(lines + "; exit(3)")))
    assert problem.message.startswith("command exited with status 3: line 0 | line 1 |")
    assert problem.message.endswith("| line 19")
    assert errors(check("command", b"", target, command=_py("exit(2)"))) == [
        ("command exited with status 2 and printed nothing", None, None)]
    assert errors(check("command", b"", target, command=["no-such-checker", "{path}"])) == [
        ("command not found: no-such-checker", None, None)]
    assert errors(check("command", b"", target, command=[])) == [
        ("invalid option: command must be a non-empty list of strings, not []", None, None)]


def test_command_timeout_kills_the_process_group(tmp_path: Path) -> None:
    target = str(tmp_path / "f.txt")
    start = time.monotonic()
    assert errors(run("command", b"", target, {"command": ["sleep", "5"], "timeout": 0.5})) \
        == [("command timed out after 0.5s", None, None)]
    assert time.monotonic() - start < 3
    pidfile = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    assert errors(run("command", b"", target, {"command": ["sh", "-c", script],
                                               "timeout": 0.5})) == [
        ("command timed out after 0.5s", None, None)]
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while True:  # the background child, in the same group, was killed too
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:  # reaped by init; a zombie still answers kill(0)
            state = Path(f"/proc/{child}/stat").read_text().split()[2]
        except OSError:
            break
        if state == "Z":
            break
        assert time.monotonic() < deadline, "the command's child survived the timeout"
        time.sleep(0.05)  # polling a process state, not synchronisation
