"""guardian.rules.plainignore answers exactly as pathspec's GitIgnoreSpec (what
guardian.rules.ignore uses) for every plain pattern, and refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pathspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.rules.ignore import IgnoreMatcher
from guardian.rules.plainignore import NotPlain, PlainIgnore, compile_lines, matches

SEGMENT = (st.text(alphabet="ab.*?", min_size=1, max_size=4)
           | st.text(alphabet="abc.*?[]!-^", min_size=1, max_size=6)
           | st.sampled_from(["**", "*", "*.py[cod]", "[a-c]", "[c-a]", "[!a]", "[]a]"]))
LINE = st.builds(
    lambda lead, segs, trail: lead + "/".join(segs) + trail,
    st.sampled_from(["", "/"]), st.lists(SEGMENT, min_size=1, max_size=4),
    st.sampled_from(["", "/", "  ", "/ "]))
#: Relative paths as Guardian has them: no "." or ".." segment.
NAME = st.text(alphabet="abc.-]", min_size=1, max_size=4).filter(lambda s: s not in (".", ".."))
PATH = st.lists(NAME, min_size=1, max_size=5)


def _pathspec(line: str, text: str) -> bool:
    spec = pathspec.GitIgnoreSpec.from_lines([line])
    return bool(spec.check_file(text).include)


@settings(max_examples=3000, deadline=None)
@given(LINE, PATH, st.booleans())
def test_plain_patterns_match_as_pathspec_does(line: str, parts: list[str],
                                               is_dir: bool) -> None:
    text = "/".join(parts) + ("/" if is_dir else "")
    try:
        patterns = compile_lines(line)
    except NotPlain:
        return
    assert any(matches(p, text) for p in patterns) == _pathspec(line, text), (line, text)


@pytest.mark.parametrize("line", ["!keep.txt", "*.[!oa]", "[z-a]", "[a", "[]]", "[[:alpha:]]",
                                  "\\#name", "a//b", "x\\ "])
def test_other_lines_are_not_plain(line: str) -> None:
    with pytest.raises(NotPlain):
        compile_lines(line)


@pytest.mark.parametrize(("line", "text", "want"), [
    ("*.pyc", "src/a.pyc", True), ("*.pyc", "src/a.py", False),
    ("build/", "build/", True), ("build/", "build", False), ("build/", "a/build/x", True),
    ("/dist", "dist/x.js", True), ("/dist", "a/dist", False),
    ("docs/_build/", "docs/_build/", True), ("docs/_build/", "x/docs/_build/", False),
    ("a/**/b", "a/b", True), ("a/**/b", "a/x/y/b", True), ("a/**/b", "a/x/c", False),
    ("logs/**", "logs/", True), ("logs/**", "logs", False), ("*", "x", True),
    ("**/", "x", False), ("**/", "x/", True), ("*/", "x/y", True),
    ("?", "a", True), ("?", "ab", False), ("a*b*c*d*e", "a" * 200 + "e", False),
    ("*.py[cod]", "x/m.pyc", True), ("*.py[cod]", "m.pyx", False), ("*.[oa]", "lib.a", True),
    ("[0-9]*.log", "1x.log", True), ("[0-9]*.log", "x1.log", False), ("a]", "a]", True),
])
def test_examples(line: str, text: str, want: bool) -> None:
    (p,) = compile_lines(line)
    assert matches(p, text) is want is _pathspec(line, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=3), st.lists(LINE, max_size=2), PATH,
       st.booleans())
def test_a_tree_of_ignore_files_is_read_as_ignore_reads_it(
        tmp_path_factory: pytest.TempPathFactory, top: list[str], below: list[str],
        parts: list[str], is_dir: bool) -> None:
    root = tmp_path_factory.mktemp("t")
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text(top[0] + "\n")
    (root / ".gitignore").write_text("\n".join(top[1:]) + "\n")
    (root / parts[0]).mkdir(exist_ok=True) if len(parts) > 1 else None
    if len(parts) > 1:
        (root / parts[0] / ".gitignore").write_text("\n".join(below) + "\n")
    rel = "/".join(parts)
    try:
        got = PlainIgnore(str(root)).ignored(rel, is_dir=is_dir)
    except NotPlain:
        return
    want = IgnoreMatcher(bytes(root)).ignored(rel.encode(), is_dir=is_dir)
    assert got == want, (top, below, rel)


def test_a_symlinked_or_special_ignore_file_is_not_plain(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("*.log\n")
    (tmp_path / ".gitignore").symlink_to(tmp_path / "real")
    with pytest.raises(NotPlain):
        PlainIgnore(str(tmp_path)).ignored("a.log")


def _walk_ignored(pi: PlainIgnore, rel: str, is_dir: bool) -> bool:
    """As the lean hook's walk asks: each directory on the way, then the path, stopping at
    the first ignored one (a walk does not go into it)."""
    parts = rel.split("/")
    parents: tuple[str, ...] = ()
    for k in range(len(parts)):
        d = "/".join(parts[:k])
        if pi.any_in(d):
            parents = (*parents, d)
        last = k == len(parts) - 1
        if parents and pi.child_ignored(parents, "/".join(parts[:k + 1]),
                                        is_dir=is_dir or not last):
            return True
    return False


@settings(max_examples=500, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=4), st.lists(LINE, max_size=3),
       st.lists(PATH, min_size=1, max_size=4), st.booleans())
def test_a_walk_asks_as_ignore_answers(tmp_path_factory: pytest.TempPathFactory,
                                       top: list[str], below: list[str],
                                       paths: list[list[str]], is_dir: bool) -> None:
    root = tmp_path_factory.mktemp("w")
    (root / ".gitignore").write_text("\n".join(top) + "\n")
    sub = paths[0][0]
    (root / sub).mkdir()
    (root / sub / ".gitignore").write_text("\n".join(below) + "\n")
    pi = PlainIgnore(str(root))
    im = IgnoreMatcher(bytes(root))
    for parts in paths:
        rel = "/".join(parts)
        try:
            got = _walk_ignored(pi, rel, is_dir)
        except NotPlain:
            return
        assert got == im.ignored(rel.encode(), is_dir=is_dir), (top, below, rel)
