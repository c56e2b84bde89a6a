"""The public conformance suites, case by case: a validator that rejects a valid file makes
``on_invalid = "revert"`` undo a good write, and one that accepts an invalid file lets it stay.

The suites are vendored under tests/conformance/ (see its README for the upstream commits):
JSONTestSuite's ``test_parsing`` (``y_`` must be accepted, ``n_`` rejected), toml-test's
TOML 1.0 list, and yaml-test-suite's data branch (a case with an ``error`` file is invalid).
Each case runs through :func:`guardian.validators.run` with the default options, as the
watcher runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardian import validators
from guardian.validators.base import ERROR
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
