"""Dependency consistency: a batch that breaks a Python import that resolved before it is
refused (a deleted or renamed module, a removed ``__init__.py``, a removed name), naming
``importer:line:col``; a rule downgrades it to a warning. Real trees, real stores, the real
batch engine (in this process, and once through ``guardian apply``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guardian.api import apply
from guardian.batch.imports import bound_names, imports, lost_names
from guardian.batch.manifest import from_dict
from guardian.errors import BatchError, RuleError
from guardian.rules.rulefiles import RULE_FILE, load_rule_file


@pytest.fixture
def tree(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(key, env[key])
    root = (tmp_path / "proj").resolve()
    files = {
        "pkg/__init__.py": "from .core import VERSION\n",
        "pkg/core.py": "VERSION = 1\n\ndef run():\n    return VERSION\n\nclass Engine:\n    pass\n",
        "pkg/util.py": "def helper():\n    return 2\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "def task():\n    from ..util import helper\n    return helper()\n",
        "app.py": "import os\nimport pkg.util\nfrom pkg.core import run, Engine\n",
        "lonely.py": "x = 1\n",
        "optional.py": "try:\n    import pkg.gone\nexcept ImportError:\n    pass\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def state(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def batch(root: Path, ops: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = apply(from_dict({"operations": ops}), root,
                                store=root.parent / "store")
    return out


def refused(root: Path, ops: list[dict[str, Any]]) -> BatchError:
    before = state(root)
    with pytest.raises(BatchError) as info:
        batch(root, ops)
    assert state(root) == before  # nothing written
    assert info.value.category == "validation"
    return info.value


def test_deleting_an_imported_module_is_refused(tree: Path) -> None:
    e = refused(tree, [{"op": "delete", "path": "pkg/util.py"}])
    assert f"{tree}/app.py:2:1: imports pkg.util, which this batch removes" in str(e)
    assert (e.path, e.line, e.column) == (str(tree / "app.py"), 2, 1)
    assert e.index == 1 and e.op == "delete"
    # The relative import inside a function counts too (its column in characters).
    assert f"{tree}/pkg/sub/deep.py:2:5: imports pkg.util" in str(e)


def test_renaming_a_module_is_refused_unless_the_batch_fixes_its_importers(tree: Path) -> None:
    move = [{"op": "delete", "path": "pkg/core.py"},
            {"op": "write", "path": "pkg/engine.py", "content": (tree / "pkg/core.py").read_text()}]
    e = refused(tree, move)
    assert "imports pkg.core, which this batch removes" in str(e)
    assert e.path == str(tree / "app.py") or e.path == str(tree / "pkg/__init__.py")
    out = batch(tree, [*move,
                       {"op": "edit", "path": "app.py", "old": "pkg.core", "new": "pkg.engine"},
                       {"op": "edit", "path": "pkg/__init__.py", "old": ".core", "new": ".engine"}])
    assert out["warnings"] == [] and not (tree / "pkg/core.py").exists()


def test_removing_a_packages_init_is_refused(tree: Path) -> None:
    e = refused(tree, [{"op": "delete", "path": "pkg/sub/__init__.py"}])
    # deep.py's relative import needs pkg.sub to stay a package.
    assert f"{tree}/pkg/sub/deep.py:2:5: imports pkg.util, which this batch removes" in str(e)
    e = refused(tree, [{"op": "delete", "path": "pkg/__init__.py"}])
    assert f"{tree}/app.py:2:1: imports pkg.util, which this batch removes" in str(e)
    assert e.op == "delete" and e.path == str(tree / "app.py")


def test_removing_an_imported_name_is_refused(tree: Path) -> None:
    e = refused(tree, [{"op": "edit", "path": "pkg/core.py", "old": "class Engine:",
                        "new": "class Motor:"}])
    assert f"{tree}/app.py:3:1: imports pkg.core.Engine, which this batch removes" in str(e)
    # Removing a name nobody imports, or keeping it under an if, is fine.
    batch(tree, [{"op": "write", "path": "pkg/core.py",
                  "content": "import sys\nif sys:\n    VERSION = 2\n    def run(): pass\n"
                             "    class Engine: pass\n"}])
    # Nobody imports pkg.VERSION (a dry run: checked the same, nothing written)...
    assert apply(from_dict({"operations": [{"op": "write", "path": "pkg/__init__.py",
                                            "content": ""}]}), tree,
                 store=tree.parent / "store", dry_run=True)["dry_run"]
    # ...until a file does: a name re-exported by a package's __init__, imported from there.
    (tree / "user.py").write_text("from pkg import VERSION\n")
    e = refused(tree, [{"op": "write", "path": "pkg/__init__.py", "content": ""}])
    assert f"{tree}/user.py:1:1: imports pkg.VERSION, which this batch removes" in str(e)


def test_what_cannot_break_is_let_through(tree: Path) -> None:
    batch(tree, [{"op": "delete", "path": "lonely.py"}])  # imported by nobody
    # optional.py's import is guarded by except ImportError; pkg.gone never resolved anyway.
    (tree / "pkg/gone.py").write_text("")
    batch(tree, [{"op": "delete", "path": "pkg/gone.py"}])
    # A module that star-imports keeps every name it might re-export.
    (tree / "star.py").write_text("from pkg.core import *\nZ = 1\n")
    (tree / "uses_star.py").write_text("from star import Z, run\n")
    batch(tree, [{"op": "write", "path": "star.py", "content": "from pkg.core import *\nZ = 2\n"}])
    # Without validation (validate: false) nothing is checked, as for content.
    out = apply(from_dict({"operations": [{"op": "delete", "path": "pkg/util.py"}],
                           "validate": False}), tree, store=tree.parent / "store")
    assert out["ok"] and not (tree / "pkg/util.py").exists()


def test_a_rule_downgrades_it_to_a_warning(tree: Path, cli: Any) -> None:
    (tree / RULE_FILE).write_text('[[rule]]\npaths = ["app.py"]\nbroken_imports = "warn"\n')
    # deep.py is not covered by the rule: still refused.
    e = refused(tree, [{"op": "delete", "path": "pkg/util.py"}])
    assert "deep.py" in str(e) and "app.py:" not in str(e)
    (tree / "pkg/sub/deep.py").write_text("def task():\n    return 2\n")
    manifest = json.dumps({"operations": [{"op": "delete", "path": "pkg/util.py"}]}).encode()
    p = cli.run("apply", "-", "--root", str(tree), input=manifest, cwd=tree)
    assert p.returncode == 0, p.stderr
    assert (f"warning: {tree}/app.py:2:1: imports pkg.util, which this batch removes"
            in p.stderr.decode())
    assert not (tree / "pkg/util.py").exists()


def test_refused_through_the_cli_with_line_and_column(tree: Path, cli: Any) -> None:
    manifest = json.dumps({"operations": [{"op": "delete", "path": "pkg/util.py"}]}).encode()
    p = cli.run("apply", "-", "--root", str(tree), "--json", input=manifest, cwd=tree)
    assert p.returncode == 1
    err = json.loads(p.stdout)["error"]
    assert err["category"] == "validation" and (err["line"], err["column"]) == (2, 1)
    assert (tree / "pkg/util.py").exists()


def test_the_rule_key_is_checked(tmp_path: Path) -> None:
    f = tmp_path / RULE_FILE
    f.write_text('[[rule]]\npaths = ["**"]\nbroken_imports = "warning"\n')
    with pytest.raises(RuleError, match=r":3: broken_imports: expected one of refuse, warn"):
        load_rule_file(f, "")


def test_parsing_is_static_and_bounded() -> None:
    refs = imports(b"import a.b as c, d\nfrom .. import e\nif x:\n    from f import (g,\n h)\n")
    assert [(r.line, r.column, r.level, r.module, r.names) for r in refs] == [
        (1, 1, 0, "a.b", None), (1, 1, 0, "d", None), (2, 1, 2, None, ("e",)),
        (4, 5, 0, "f", ("g", "h"))]
    assert imports(b"def (:\n") == ()  # unparsable: nothing checked
    assert imports(b"(" * 100_000) == ()  # too deep for the parser: no crash
    names = bound_names(b"import a.b\nx, (y, *z) = 1, (2, 3)\nfor i in []: pass\n"
                        b"try:\n    import q\nexcept E as err:\n    w = 1\n")
    assert {"a", "x", "y", "z", "i", "q", "err", "w"} <= names
    assert "*" in bound_names(b"def __getattr__(name): ...\n")


@pytest.mark.parametrize(("old", "new"), [
    (b'"""Doc\n\nclass fake:\n"""\nimport os, sys as s\nfrom x import y, z as w\n@dec\n'
     b'def f(): pass\nX: int = 1\nif __name__ == "__main__":\n    main()\n',
     b"import os\nfrom x import y\nX = 2\n"),
    (b"a = b = 1\n", b"a = 1\n"),
    (b"x = f(a=1)\ny = 2\nprint(x)\n", b"x = 3\n"),
    (b"class A:\n    pass\ndef g(\n  x): pass\n", b"class A:\n    pass\n"),
    (b"try:\n  import q\nexcept ImportError: pass\n", b""),
    (b"import a.b.c\nexceptions = 1\n", b""),
    (b"def f(): pass\n", b'"""\ndef f(): pass\n"""\n'),
])
def test_the_quick_comparison_agrees_with_the_parser(old: bytes, new: bytes) -> None:
    quick = lost_names(old, new)
    assert quick is None or quick == set(bound_names(old) - bound_names(new))
