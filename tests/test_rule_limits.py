"""Rule files and globs are untrusted input: bounded cost, one-line errors, a daemon that
keeps recording whatever a rule file holds; and Guardian says when a path is ignored."""

from __future__ import annotations

import pytest

from guardian.globs import GlobError, compile_glob

from .conftest import Watch

#: 4 KB that made tomllib recurse: RecursionError is not a TOMLDecodeError (exit 70).
DEEP = "x = " + "[" * 2000 + "]" * 2000 + "\n"
#: A glob Python's re took seconds per path to reject (backtracking).
PATHOLOGICAL = "**/**/**/**/*a*a*a*a*a*b"


def wait_alert(w: Watch, kind: str, start: int) -> dict:
    return w.wait(lambda e: e["event"] == "alert" and e["kind"] == kind,
                  what=f"a {kind} alert", start=start)


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
