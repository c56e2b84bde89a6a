"""Rule files: parsing, exact errors, nearest-wins resolution, presets, globs, trust."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from guardian.errors import GlobError, RuleError
from guardian.rules.globs import compile_glob
from guardian.rules.rulefiles import RULE_FILE, RuleSet, load_preset, load_rule_file
from guardian.rules.settings import presets_dir

from .conftest import Cli


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


ISSUE_EXAMPLE = """\
[[rule]]
paths = ["**/*.json"]
validators = ["json"]
on_invalid = "revert"

[[rule]]
paths = ["config/**"]
protect = true

[[rule]]
paths = ["**/*.py"]
validators = ["python", { command = ["ruff", "check", "--quiet", "{path}"], timeout = 10 }]
on_invalid = "alert"
"""


def test_the_documented_example_loads_and_resolves(tmp_path: Path) -> None:
    write(tmp_path / RULE_FILE, ISSUE_EXAMPLE)
    rs = RuleSet(str(tmp_path))
    j = rs.effective("a/b/data.json")
    assert [v.name for v in j.validators] == ["json"] and j.on_invalid == "revert"
    assert j.settings["on_invalid"][1].line == 4
    assert rs.effective("config/app.ini").protected
    assert not rs.effective("src/config/app.ini").protected  # globs are relative to the file
    py = rs.effective("pkg/mod.py")
    assert [v.name for v in py.validators] == ["python", "command"]
    assert py.validators[1].options["command"][-1] == "{path}"
    assert py.validators[1].source == str(tmp_path / RULE_FILE)
    assert py.on_invalid == "alert"
    # Defaults still come from the shipped preset, with their origin.
    assert py.get("keep_versions") == 100
    assert py.settings["keep_versions"][1].file.endswith("default.toml")


def test_nearest_file_wins_per_key_and_last_rule_within_a_file(tmp_path: Path) -> None:
    write(tmp_path / RULE_FILE, '[[rule]]\npaths = ["**"]\non_invalid = "alert"\n'
                                'keep_versions = 7\n\n'
                                '[[rule]]\npaths = ["**/*.md"]\non_invalid = "record"\n')
    write(tmp_path / "docs" / RULE_FILE, '[[rule]]\npaths = ["*.md"]\non_invalid = "revert"\n')
    rs = RuleSet(str(tmp_path))
    assert rs.effective("x.md").on_invalid == "record"          # last matching rule in file
    assert rs.effective("x.txt").on_invalid == "alert"
    deep = rs.effective("docs/guide.md")
    assert deep.on_invalid == "revert"                            # the nearer file wins...
    assert deep.get("keep_versions") == 7                         # ...only for its own keys
    assert rs.effective("docs/sub/guide.md").on_invalid == "record"  # *.md: this dir only
    assert deep.files[-1] == str(tmp_path / "docs" / RULE_FILE)


def test_extends_a_preset(tmp_path: Path) -> None:
    write(tmp_path / "proj" / RULE_FILE, 'extends = "strict"\n')
    rs = RuleSet(str(tmp_path))
    eff = rs.effective("proj/a.json")
    assert eff.on_invalid == "revert" and [v.name for v in eff.validators] == ["auto"]
    assert rs.effective("elsewhere.json").on_invalid == "record"
    write(tmp_path / "py" / RULE_FILE, 'extends = "python"\n')
    assert RuleSet(str(tmp_path)).effective("py/pkg/x.py").on_invalid == "alert"
    assert RuleSet(str(tmp_path)).effective("py/pyproject.toml").on_invalid == "revert"


@pytest.mark.parametrize(("text", "needle"), [
    ('[[rule]]\npaths = ["**"]\non_invalide = "revert"\n',
     ":3: on_invalide: unknown key 'on_invalide' (did you mean 'on_invalid'?)"),
    ('[[rule]]\npaths = ["**"]\nprotect = "yes"\n', ":3: protect: expected true or false"),
    ('[[rule]]\npaths = ["src/[a-"]\n', ":2: paths: bad glob 'src/[a-': unclosed '['"),
    ('[[rule]]\npaths = ["**"]\nvalidators = ["jsno"]\n',
     ":3: validators: unknown validator 'jsno' (did you mean 'json'?)"),
    ('extends = "stritc"\n', ":1: extends: unknown preset 'stritc' (did you mean 'strict'?)"),
    ('[[rule]]\npaths = ["**"]\non_invalid = "revrt"\n', "did you mean 'revert'?"),
    ('[[rule]]\nvalidators = ["json"]\n', "paths: missing"),
    ('[[rule]]\npaths = ["**"]\nkeep_versions = 0\n', ":3: keep_versions: expected a whole"),
    ('[[rule]]\npaths = ["**"]\nmax_file_size = "huge"\n', "expected a size such as 50MiB"),
    ('[[rule]\npaths = 1\n', ":1: "),
    ('[[rule]]\npaths = ["a**b"]\n', "'**' must be a whole path segment"),
    ('[[rule]]\npaths = ["**"]\nvalidators = [{ command = "ruff" }]\n',
     "command must be a non-empty list of strings"),
    ('tpyo = 1\n', ":1: tpyo: unknown key 'tpyo'"),
])
def test_errors_name_file_line_key_and_suggest(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path / RULE_FILE, text)
    with pytest.raises(RuleError) as info:
        load_rule_file(path, "")
    message = str(info.value)
    assert message.startswith(str(path) + ":"), message
    assert needle in message, message
    assert "\n" not in message


@pytest.mark.parametrize(("glob", "yes", "no"), [
    ("**/*.json", ["a.json", "x/y/a.json"], ["a.jsonl", "a.json/x"]),
    ("config/**", ["config/a", "config/x/y"], ["configs/a", "x/config/a"]),
    ("*.md", ["README.md"], ["docs/README.md"]),
    ("src/{a,b}/*.py", ["src/a/x.py", "src/b/y.py"], ["src/c/x.py"]),
    ("file?.txt", ["file1.txt"], ["file10.txt", "file/.txt"]),
    ("[!._]*", ["x"], [".x", "_x"]),
    ("/top.txt", ["top.txt"], ["d/top.txt"]),
])
def test_globs(glob: str, yes: list[str], no: list[str]) -> None:
    rx = compile_glob(glob)
    assert all(rx.match(p) for p in yes), glob
    assert not any(rx.match(p) for p in no), glob


def test_bad_globs() -> None:
    for g in ("[abc", "{a,b", "a}", "x**", ""):
        with pytest.raises(GlobError):
            compile_glob(g)


def test_shipped_presets_validate_against_the_shipped_schema() -> None:
    import tomllib

    import jsonschema

    schema = json.loads((presets_dir() / "guardian-rules.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in ("default", "strict", "python"):
        doc = tomllib.loads((presets_dir() / f"{name}.toml").read_text())
        jsonschema.validate(doc, schema)
        assert load_preset(name).rules
    doc = tomllib.loads(ISSUE_EXAMPLE)
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rule": [{"paths": ["**"], "on_invalide": "x"}]}, schema)


def test_broken_edit_keeps_the_last_good_rules(tmp_path: Path) -> None:
    f = write(tmp_path / RULE_FILE, '[[rule]]\npaths = ["**/*.json"]\non_invalid = "revert"\n')
    rs = RuleSet(str(tmp_path))
    assert rs.effective("a.json").on_invalid == "revert"
    f.write_text('[[rule]]\npaths = ["**/*.json"]\non_invalid = "revrt"\n')
    error = rs.reload("")
    assert error and f"{f}:3: on_invalid" in error
    assert rs.effective("a.json").on_invalid == "revert"
    f.write_text('[[rule]]\npaths = ["**/*.json"]\non_invalid = "alert"\n')
    assert rs.reload("") is None and rs.effective("a.json").on_invalid == "alert"
    assert not rs.errors


def test_ignore_globs_in_rule_files(tmp_path: Path) -> None:
    write(tmp_path / RULE_FILE, 'ignore = ["*.tmp", "cache/**"]\n')
    write(tmp_path / "sub" / RULE_FILE, 'ignore = ["local.txt"]\n')
    rs = RuleSet(str(tmp_path))
    assert rs.ignored("x.tmp") and rs.ignored("cache/a/b") and not rs.ignored("sub/x.tmp")
    assert rs.ignored("sub/local.txt") and not rs.ignored("local.txt")


# ----------------------------------------------------------------------------- CLI
def test_rules_command_explains_where_each_setting_came_from(cli: Cli, root: Path) -> None:
    write(root / RULE_FILE, ISSUE_EXAMPLE)
    (root / "config").mkdir()
    out = cli.json("rules", str(root / "config" / "app.json"), cwd=root)
    assert out["root"] == str(root)
    settings = out["settings"]
    assert settings["protect"] == {"value": True, "from": f"{root / RULE_FILE}:8"}
    assert settings["on_invalid"]["value"] == "revert"
    assert settings["validators"]["value"] == [{"name": "json"}]
    assert settings["keep_days"]["from"].endswith("default.toml:16")
    human = cli.run("rules", str(root / "config" / "app.json"), check=True,
                    cwd=root).stdout.decode()
    assert f"protect = true    # {root / RULE_FILE}:8" in human
    write(root / "bad" / RULE_FILE, "[[rule]]\npaths = [\"**\"]\nbogus = 1\n")
    p = cli.run("rules", str(root / "bad" / "x"), cwd=root)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1 and b":3: bogus" in p.stderr


def test_validate_command_exit_codes_and_locations(cli: Cli, root: Path) -> None:
    (root / "ok.json").write_text('{"a": [1, 2]}\n')
    (root / "bad.json").write_text('{\n  "a": 1,\n}\n')
    (root / "bad.py").write_text("def f(:\n    pass\n")
    (root / "ok.py").write_text("x = 1\n")
    assert cli.run("validate", str(root / "ok.json"), str(root / "ok.py"), cwd=root).returncode == 0
    p = cli.run("validate", str(root / "bad.json"), cwd=root)
    assert p.returncode == 1
    assert p.stdout.decode().startswith(f"{root / 'bad.json'}:3:1: ")
    p = cli.run("validate", str(root), "--json", cwd=root)
    assert p.returncode == 1
    out = json.loads(p.stdout)
    by_path = {os.path.basename(f["path"]): f for f in out["files"]}
    assert out["ok"] is False and by_path["ok.json"]["valid"] is True
    assert by_path["bad.py"]["valid"] is False
    [problem] = by_path["bad.py"]["results"][0]["problems"]
    assert (problem["line"], problem["column"]) == (1, 7)
    assert cli.run("validate", str(root / "missing.json"), cwd=root).returncode == 2


def test_trust_gates_command_validators(cli: Cli, root: Path) -> None:
    rule = write(root / RULE_FILE, '[[rule]]\npaths = ["*.txt"]\nvalidators = [{ command = '
                 '["sh", "-c", "grep -q OK {path} || { echo {path}:1:1: no OK; exit 1; }"] }]\n')
    (root / "a.txt").write_text("nothing here\n")
    p = cli.run("validate", str(root / "a.txt"), cwd=root)
    assert p.returncode == 0 and b"skipped command sh" in p.stderr and b"guardian trust" in p.stderr
    out = cli.json("trust", str(rule))
    assert out["trusted"] is True and len(out["sha256"]) == 64
    p = cli.run("validate", str(root / "a.txt"), cwd=root)
    assert p.returncode == 1 and b"a.txt:1:1: no OK" in p.stdout
    # Changing the file revokes the trust.
    rule.write_text(rule.read_text() + "\n# edited\n")
    assert cli.run("validate", str(root / "a.txt"), cwd=root).returncode == 0
    cli.json("trust", str(rule))
    cli.json("trust", str(rule), "--revoke")
    assert cli.run("validate", str(root / "a.txt"), cwd=root).returncode == 0
    trust_file = Path(cli.env["XDG_STATE_HOME"]) / "guardian" / "trust.json"
    assert oct(trust_file.stat().st_mode & 0o777) == "0o600"
    write(root / "broken" / RULE_FILE, "nope = \n")
    assert cli.run("trust", str(root / "broken" / RULE_FILE)).returncode == 2


def test_json_schema_named_by_a_rule(cli: Cli, root: Path) -> None:
    write(root / "schemas" / "cfg.json", json.dumps({
        "type": "object", "required": ["port"],
        "properties": {"port": {"type": "integer"}}}))
    write(root / RULE_FILE, '[[rule]]\npaths = ["*.yaml"]\n'
                            'validators = ["yaml", { schema = "schemas/cfg.json" }]\n')
    (root / "ok.yaml").write_text("port: 80\n")
    (root / "bad.yaml").write_text("name: x\nport: eighty\n")
    assert cli.run("validate", str(root / "ok.yaml"), cwd=root).returncode == 0
    p = cli.run("validate", str(root / "bad.yaml"), cwd=root)
    assert p.returncode == 1
    assert b"/port: 'eighty' is not of type 'integer'" in p.stdout
    assert f"{root / 'bad.yaml'}:2:".encode() in p.stdout
