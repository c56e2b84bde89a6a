"""Globs against a reference: a backtracking regular expression written from the documented
semantics, compared on random globs and paths (issue 9 point 22). The tables of semantics,
escapes and error messages are in tests/test_rule_limits.py."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.errors import GlobError
from guardian.rules.globs import (
    MAX_ALTERNATIVES,
    MAX_BRACE_DEPTH,
    MAX_GLOB_LENGTH,
    MAX_WILDCARDS,
    compile_glob,
    matches,
)


def reference(glob: str) -> re.Pattern[str]:
    """The documented semantics as a (backtracking) regular expression."""
    g = glob.lstrip("/")
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(g):
        c = g[i]
        at_segment_start = i == 0 or g[i - 1] == "/"
        if g.startswith("**/", i) and at_segment_start:
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if g.startswith("**", i) and at_segment_start and i + 2 == len(g):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = g.index("]", i + 2)
            body = g[i + 1:j]
            if body[0] in "!^":
                out.append("[^/" + re.escape(body[1:]).replace("\\-", "-") + "]")
            else:
                out.append("[" + re.escape(body).replace("\\-", "-") + "]")
            i = j
        elif c == "{":
            out.append("(?:")
            depth += 1
        elif c == "}" and depth:
            out.append(")")
            depth -= 1
        elif c == "," and depth:
            out.append("|")
        elif c == "\\" and i + 1 < len(g):
            i += 1
            out.append(re.escape(g[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


PIECE = st.sampled_from(["a", "b", ".", "*", "?", "[ab]", "[!a]", "[a-b]", "\\*", "\\?",
                         "{a,b}", "{,a*}", "{a/b,?}", "ab", "*a*"])
def _single_stars(text: str) -> str:
    while "**" in text:
        text = text.replace("**", "*")
    return text


SEGMENT = st.one_of(st.just("**"),
                    st.lists(PIECE, min_size=1, max_size=4).map("".join).map(_single_stars))
GLOB = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
NAME = st.sampled_from(["a", "b", "ab", "ba", ".a", "*", "?", "aab", "b.a", "x", ""])
PATH = st.lists(NAME, min_size=1, max_size=5).map("/".join)


def test_prefix_suffix_and_needle_filters() -> None:
    g = compile_glob("src/*ab*/x?.py")
    assert g.match("src/zabz/x1.py")
    for p in ("sr/zabz/x1.py", "src/zabz/x1.pyc", "src/zaz/x1.py", "src/ab/x.py"):
        assert not g.match(p), p
    assert compile_glob("{a,b}x").match("bx")
    lit = compile_glob("/docs/readme.md")
    assert lit.match("docs/readme.md") and not lit.match("docs/readme.mdx")


def test_the_automaton_starts_afresh_when_full_and_stays_right() -> None:
    """A glob whose automaton has more states than are kept: answers stay right after its
    cache is dropped and rebuilt, on many paths, from several threads at once."""
    glob = "*a????????"  # every position may be the 'a': 2**9 reachable subsets
    g = compile_glob(glob)
    rx = reference(glob)
    paths = [format(n, "b").zfill(10).replace("0", "b").replace("1", "a") for n in range(1024)]
    paths += ["x" + p for p in paths[::7]] + ["a/" + p for p in paths[::13]]
    want = [rx.fullmatch(p) is not None for p in paths]
    assert [g.match(p) for p in paths] == want
    got: list[list[bool]] = []

    def worker() -> None:
        got.append([g.match(p) for p in reversed(paths)])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [want[::-1]] * 3


def test_more_distinct_characters_than_are_remembered() -> None:
    g = compile_glob("*[α-ω]?")
    chars = [chr(c) for c in range(0x100, 0x100 + 600)]
    for c in chars:
        assert g.match("x" + "α" + c)
        assert g.match(c + "ω" + c)
        assert not g.match(c + "a" + c)
        assert g.match(c * 3) == ("α" <= c <= "ω")
    assert not g.match("αα/")


@pytest.mark.parametrize(("glob", "ok"), [
    ("a" * MAX_GLOB_LENGTH, True),
    ("/" + "a" * (MAX_GLOB_LENGTH - 1), True),
    ("/" + "a" * MAX_GLOB_LENGTH, False),
    ("/*" * MAX_WILDCARDS, True),
    ("?" * MAX_WILDCARDS, True),
    ("?" * (MAX_WILDCARDS + 1), False),
    ("[a]" * MAX_WILDCARDS + "*", False),
    ("{a,b}" * (MAX_ALTERNATIVES // 2), True),
    ("{a,b}" * (MAX_ALTERNATIVES // 2) + "{c}", False),
    ("{" * MAX_BRACE_DEPTH + "a" + "}" * MAX_BRACE_DEPTH, True),
    ("{" * (MAX_BRACE_DEPTH + 1) + "a" + "}" * (MAX_BRACE_DEPTH + 1), False),
])
def test_limits_are_inclusive(glob: str, ok: bool) -> None:
    if ok:
        compile_glob(glob)
    else:
        with pytest.raises(GlobError):
            compile_glob(glob)


@pytest.mark.parametrize(("glob", "message"), [
    ("[", "unclosed '[' (at column 1)"),
    ("[!", "unclosed '[' (at column 1)"),
    ("[]", "unclosed '[' (at column 1)"),
    ("[!]", "unclosed '[' (at column 1)"),
    ("//a/[b", "unclosed '[' (at column 5)"),
    ("ab/{x,[y-a]}", "bad range 'y-a' in '[...]' (at column 7)"),
    ("a/**b", "'**' must be a whole path segment (at column 3)"),
    ("a/**/b**", "'**' must be a whole path segment (at column 7)"),
    ("}", "unmatched '}' (at column 1)"),
])
def test_more_error_messages(glob: str, message: str) -> None:
    with pytest.raises(GlobError) as e:
        compile_glob(glob)
    assert str(e.value) == message


@pytest.mark.parametrize(("glob", "yes", "no"), [
    ("**", ["a", "a/b", ""], []),
    ("**/x", ["x", "a/x", "a/b/x"], ["ax", "x/a"]),
    ("a/**/b", ["a/b", "a/x/b", "a/x/y/b"], ["ab", "a/xb", "b"]),
    ("a/**", ["a/", "a/x", "a/x/y"], ["a", "ab"]),
    ("**/*.py", ["x.py", "a/x.py"], ["x.pyc", "x.py/a"]),
    ("**/[ab]", ["a", "x/b"], ["x/c", "ab"]),
    ("*", ["a", ".a", ""], ["a/b"]),
    ("[a-cx-z]", ["b", "y"], ["d", "w", "-"]),
    ("[!a-c]", ["d"], ["b", "/"]),
    ("[\\]]", ["\\]"], ["]", "\\"]),
    ("[a\\-z]", ["a", "\\", "z", "b", "_"], ["-", "A"]),  # a backslash is itself: \\-z
    ("\\[a]", ["[a]"], ["a"]),
    ("\\\\", ["\\"], ["\\\\"]),
    ("{a,b}{c,d}", ["ac", "bd"], ["ab", "cd"]),
    ("x/{a/**/b,c}", ["x/a/b", "x/a/q/b", "x/c"], ["x/a", "x/b"]),
    ("a{b,c}d*", ["abd", "acdzz"], ["ad", "abcd"]),
    ("[\x01-\x05]", ["\x01", "\x05"], ["\x00", "\x06"]),  # the lowest class is below 1
    ("*[!\x00]", ["a\x01"], ["a\x00", "a/"]),
])
def test_semantics(glob: str, yes: list[str], no: list[str]) -> None:
    g = compile_glob(glob)
    assert [p for p in yes if not g.match(p)] == [], glob
    assert [p for p in no if g.match(p)] == [], glob
    assert all(matches(glob, p) for p in yes)


def test_match_answers_a_bool() -> None:
    for glob, path in (("*a*b*c", "xbxc"), ("*a*b*c", "abx"), ("**/*a*b", "d/ba"),
                       ("x", "y"), ("[ab]", "c"), ("*.py", "a.txt"), ("**/a*.py", "a/b.py")):
        assert compile_glob(glob).match(path) is False, (glob, path)
    assert compile_glob("*a*b*c").match("xaxbxc") is True


def test_a_closing_bracket_first_in_a_set_is_itself() -> None:
    assert compile_glob("[]]").match("]") and not compile_glob("[]]").match("a")
    assert compile_glob("[!]]").match("a") and not compile_glob("[!]]").match("]")
    assert compile_glob("x[]]y").match("x]y")


def test_text_repr_and_str() -> None:
    g = compile_glob("/src/*.py")
    assert (g.text, str(g), repr(g)) == ("/src/*.py", "/src/*.py", "Glob('/src/*.py')")


@settings(max_examples=150, deadline=None, database=None)
@given(GLOB, st.lists(PATH, min_size=1, max_size=8))
def test_matches_the_reference_semantics(glob: str, paths: list[str]) -> None:
    g = compile_glob(glob)
    rx = reference(glob)
    for p in paths:
        assert g.match(p) == (rx.fullmatch(p) is not None), (glob, p)


@settings(max_examples=80, deadline=None, database=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "*", ".", "ab"]), min_size=1, max_size=4)
                .map("".join).map(_single_stars), min_size=1, max_size=3).map("/".join),
       st.booleans(), st.lists(PATH, min_size=1, max_size=8))
def test_the_string_search_path_agrees_with_the_automaton(body: str, tail: bool,
                                                          paths: list[str]) -> None:
    """Globs of literals and ``*`` are answered by string searches; the same glob inside
    braces goes through the automaton: both give the same answers."""
    name = _single_stars(body.replace("/", ""))
    glob = "**/" + name if tail else body
    fast = compile_glob(glob)
    slow = compile_glob("**/{" + name + "}" if tail else "{" + glob + "}")
    for p in paths:
        assert fast.match(p) == slow.match(p) == (reference(glob).fullmatch(p) is not None), \
            (glob, p)
