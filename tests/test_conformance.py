"""The public conformance suites, case by case: a validator that rejects a valid file makes
``on_invalid = "revert"`` undo a good write, and one that accepts an invalid file lets it stay.

The suites are vendored under tests/conformance/ (see its README for the upstream commits):
JSONTestSuite's ``test_parsing`` (``y_`` must be accepted, ``n_`` rejected), toml-test's
TOML 1.0 list, and yaml-test-suite's data branch (a case with an ``error`` file is invalid).
Each case runs through :func:`guardian.validation.validators.run` with the default options, as the
watcher runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from guardian.validation import validators
from guardian.validation.validators.base import ERROR
from tests.conftest import Cli

SUITES = Path(__file__).parent / "conformance"
JSON_SUITE = SUITES / "JSONTestSuite" / "test_parsing"
TOML_SUITE = SUITES / "toml-test"
YAML_SUITE = SUITES / "yaml-test-suite"


def _json_cases() -> list[tuple[str, bool]]:
    return [(p.name, p.name.startswith("y_")) for p in sorted(JSON_SUITE.glob("[yn]_*.json"))]


def _toml_cases() -> list[tuple[str, bool]]:
    listed = (TOML_SUITE / "files-toml-1.0.0").read_text().split()
    return [(name, name.startswith("valid/")) for name in listed]


def _yaml_cases() -> list[tuple[str, bool]]:
    return [(str(p.parent.relative_to(YAML_SUITE)), not (p.parent / "error").exists())
            for p in sorted(YAML_SUITE.rglob("in.yaml"))]


def _verdict(name: str, data: bytes, path: str) -> validators.Result:
    result = validators.run(name, data, path, timeout=None)
    assert result.skipped is None, result
    return result


def check(name: str, data: bytes | str, path: str, **options: Any) -> validators.Result:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    result = validators.run(name, raw, path, options, timeout=None)
    assert result.skipped is None, result
    return result


def errors(result: validators.Result) -> list[tuple[str, int | None, int | None]]:
    return [(p.message, p.line, p.column) for p in result.problems if p.severity == ERROR]


def _check(name: str, data: bytes, path: str, valid: bool) -> None:
    result = _verdict(name, data, path)
    if valid:
        assert result.ok, [p for p in result.problems if p.severity == ERROR]
    else:
        assert not result.ok, "accepted an invalid file"
        for p in result.problems:  # and says where, as every problem does
            assert p.message and "internal validator error" not in p.message, p


def test_the_suites_are_all_there() -> None:
    """The counts upstream has: a file lost in a copy would silently shrink the suite."""
    assert (sum(v for _, v in _json_cases()), sum(not v for _, v in _json_cases())) == (95, 188)
    assert (sum(v for _, v in _toml_cases()), sum(not v for _, v in _toml_cases())) == (210, 499)
    assert (sum(v for _, v in _yaml_cases()), sum(not v for _, v in _yaml_cases())) == (308, 94)


@pytest.mark.parametrize(("case", "valid"), _json_cases(), ids=[c for c, _ in _json_cases()])
def test_json_test_suite(case: str, valid: bool) -> None:
    _check("json", (JSON_SUITE / case).read_bytes(), case, valid)


@pytest.mark.parametrize(("case", "valid"), _toml_cases(), ids=[c for c, _ in _toml_cases()])
def test_toml_test(case: str, valid: bool) -> None:
    _check("toml", (TOML_SUITE / case).read_bytes(), case, valid)


@pytest.mark.parametrize(("case", "valid"), _yaml_cases(), ids=[c for c, _ in _yaml_cases()])
def test_yaml_test_suite(case: str, valid: bool) -> None:
    _check("yaml", (YAML_SUITE / case / "in.yaml").read_bytes(), f"{case}.yaml", valid)


# ----------------------------------------------------------------------------- presets
DUPLICATES = {
    "conf.json": b'{"name": "a",\n "name": "b"}\n',
    "conf.yaml": b"name: a\nname: b\n",
}


def test_duplicate_keys_warn_by_default_and_fail_under_the_strict_preset(cli: Cli,
                                                                           tmp_path: Path) -> None:
    """JSON (RFC 8259: names SHOULD be unique) and YAML files with a repeated key parse; most
    loaders keep the last value. By default that is a warning, under ``extends = "strict"``
    an error (and so, there, a revert)."""
    root = tmp_path / "tree"
    root.mkdir()
    for name, data in DUPLICATES.items():
        (root / name).write_bytes(data)
    files = [str(root / name) for name in DUPLICATES]

    p = cli.run("validate", *files, "--json", cwd=root)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    problems = [pr for f in report["files"] for r in f["results"] for pr in r["problems"]]
    assert [(pr["severity"], pr["line"]) for pr in problems] == [("warning", 2)] * 2, report

    (root / ".guardian.toml").write_text('extends = "strict"\n')
    p = cli.run("validate", *files, cwd=root)
    assert p.returncode == 1, p.stderr
    out = p.stdout.decode()
    assert f"{root / 'conf.json'}:2:2: duplicate key 'name' (first at line 1)" in out, out
    assert f"{root / 'conf.yaml'}:2:1: duplicate key 'name' (first at line 1)" in out, out


# ----------------------------------------------------------------------------- JSON, TOML
@pytest.mark.parametrize(("text", "where"), [
    ('[{"a": 1, "a": 2}]', [(1, 11)]),
    ('[1, "a", {"b": 0, "a": 1, "a": 2}]', [(1, 27)]),
    ('[[], [{"a": 1}, {"a": 1, "a": 2}]]', [(1, 26)]),
    ('{"list": [{"a": 1}], "a": 2, "list": 3}', [(1, 30)]),
    ('[{"a": [1]}, {"a": [1]},\n {"k": {"a": 1}, "k": 2}]', [(2, 18)]),
    # Not duplicates (one real duplicate first, so that the exact scan runs): equal keys in
    # sibling objects, equal strings in an array, a key equal to a string value.
    ('[{"d": 1, "d": 2}, {"a": 1}, {"a": 1}]', [(1, 11)]),
    ('[{"d": 1, "d": 2}, "a", "a", "a", ["a", "a", "a"]]', [(1, 11)]),
    ('[{"d": 1, "d": 2}, {"a": "a", "b": ["a", "a", {"a": "b"}]}]', [(1, 11)]),
])
def test_json_duplicate_keys_anywhere(text: str, where: list[tuple[int, int]]) -> None:
    result = check("json", text, "x.json", duplicate_keys="error")
    assert [(p.line, p.column) for p in result.problems] == where, result



def test_toml_byte_order_mark_is_valid_toml_with_a_warning() -> None:
    # toml-test's valid/utf8-bom-*: valid TOML, but tomllib (so pip, build, pytest) rejects it.
    result = check("toml", "\ufeffa = 1\n", "x.toml")
    assert result.ok
    assert [(p.message, p.line, p.column, p.severity) for p in result.problems] == [
        ("byte order mark at the start of the file (valid TOML, but Python's tomllib rejects "
         "it)", 1, 1, "warning")]
    assert errors(check("toml", "a = 1\n\ufeffb = 2\n", "x.toml"))  # only at the start


# ----------------------------------------------------------------------------- YAML
def test_yaml_both_parsers_refuse_it_where_yaml_1_2_does() -> None:
    # PyYAML accepts these; YAML 1.2 (yaml-test-suite YJV2, SU5Z) does not.
    assert errors(check("yaml", "[-]\n", "x.yaml")) == [
        ("plain scalar cannot start with '-' followed by ,[]{}", 1, 2)]
    assert errors(check("yaml", 'key: "value"# comment\n', "x.yaml")) == [
        ("comments must be separated from other tokens by whitespace", 1, 13)]
    # Where PyYAML stops at a valid construct (an empty key, line 1) and the real error is
    # further down, the real one is reported.
    assert errors(check("yaml", ": a\nb: c\nd: [-]\n", "x.yaml")) == [
        ("plain scalar cannot start with '-' followed by ,[]{}", 3, 5)]


def test_yaml_duplicates_in_what_only_yaml_1_2_reads() -> None:
    # PyYAML cannot read an empty key (yaml-test-suite 2JQS), so nothing locates the repeat.
    text = ": a\nb: 1\n: c\n"
    result = check("yaml", text, "x.yaml")
    assert result.ok
    assert [(p.message, p.line, p.severity) for p in result.problems] == [
        ("duplicate key null", None, "warning")]
    assert errors(check("yaml", text, "x.yaml", duplicate_keys="error")) == [
        ("duplicate key null", None, None)]
    assert check("yaml", text, "x.yaml", duplicate_keys="allow").problems == ()


def test_yaml_characters_yaml_does_not_allow() -> None:
    # yaml-rs reads a NUL as the end of the text and takes other control characters.
    for text, where, code in (("a: b\x00c\n", (1, 5), "0000"), ("a: 1\nb: \x7f\n", (2, 4), "007F"),
                              ("a: \x80\n", (1, 4), "0080"), ("a: \ufffe\n", (1, 4), "FFFE")):
        assert errors(check("yaml", text, "x.yaml")) == [
            (f"character U+{code} is not allowed in YAML", *where)], text
    assert check("yaml", "a: \x85 \xa0 \t \u2028 \U0001f600\n", "x.yaml").problems == ()


def test_yaml_schema_of_valid_yaml_pyyaml_cannot_read(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "required": ["name"]}')
    result = check("schema", ": untitled\nname: x\n", "c.yaml", schema=str(schema))
    assert result.ok
    [problem] = result.problems
    assert problem.severity == "warning" and problem.message.startswith(
        "PyYAML (a YAML 1.1 parser) cannot read this valid YAML: "), problem
    assert not check("schema", "other: x\n", "c.yaml", schema=str(schema)).ok  # still checked


#: Valid YAML that overflowed the stack (a segmentation fault) in yaml-rs: 64 aliases, each
#: replayed 200 flow levels inside the next (a 26 KB file), and 20,000 block levels.
STACK_BREAKERS = {
    "aliases.yaml": ("a0: &a0 x\n" + "".join(
        f"a{i}: &a{i} " + "[" * 200 + f"*a{i - 1}" + "]" * 200 + "\n" for i in range(1, 64)), 0),
    "block.yaml": ("- " * 20_000 + "x\n", 1),
}


@pytest.mark.parametrize("name", sorted(STACK_BREAKERS))
def test_yaml_input_too_deep_for_yaml_rs_is_judged_without_crashing(cli: Cli, tmp_path: Path,
                                                                     name: str) -> None:
    text, code = STACK_BREAKERS[name]
    target = tmp_path / name
    target.write_text(text)
    p = cli.run("validate", str(target), cwd=tmp_path)
    assert p.returncode == code, (p.returncode, p.stderr[-500:])
    if code:
        assert f"{target}:1:" in p.stdout.decode() and "nesting too deep" in p.stdout.decode()


def test_yaml_wide_indentation_is_still_valid() -> None:
    # A line indented past SAFE_PREFIX is not given to yaml-rs; PyYAML's composition decides.
    assert check("yaml", "x:\n" + " " * 300 + "y: 1\n", "x.yaml").problems == ()
    assert errors(check("yaml", "x:\n" + " " * 300 + "y: [1\n", "x.yaml"))


@pytest.mark.slow
def test_the_conformance_benchmark_group_runs(cli: Cli, tmp_path: Path) -> None:
    """`python -m bench --quick conformance`: the suites' counts beside the previous verdict's,
    and every throughput row beside its baseline."""
    repo = Path(__file__).resolve().parent.parent
    env = {**cli.env, "TMPDIR": str(tmp_path), "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "conformance"],
                       capture_output=True, env=env, cwd=repo, timeout=300)
    assert p.returncode in (0, 1), p.stderr.decode()[-2000:]
    suites, throughput = json.loads(p.stdout)["tables"]
    counts = {r["metric"]: (r["value"], r["baseline"]) for r in suites["rows"]}
    assert counts["yaml: valid accepted (of 308)"] == (308, 255), counts
    assert counts["yaml: invalid caught (of 94)"] == (94, 78), counts
    assert counts["json: valid accepted (of 95)"] == (95, 93), counts
    assert counts["toml: valid accepted (of 210)"] == (210, 208), counts
    assert all(r["result"] == "PASS" for r in suites["rows"]), suites
    assert len(throughput["rows"]) == 6 and not throughput.get("error"), throughput
    assert all(r["value"] > 0 and r["baseline"] > 0 for r in throughput["rows"]), throughput
