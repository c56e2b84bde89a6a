"""Unified diffs applied strictly (issue 9 point 22: offsets, several hunks, short headers and
``\\ No newline at end of file`` were untested)."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.batch.patch import MAX_OFFSET, apply, parse
from guardian.errors import PatchError

TEN = "".join(f"line {i}\n" for i in range(1, 11))
NO_EOL = "\\ No newline at end of file\n"


def diff(a: str, b: str, n: int = 3) -> str:
    """``diff -u a b`` as GNU diff prints it, "\\ No newline at end of file" included."""
    out = []
    for line in difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                     "a/f", "b/f", n=n):
        out.append(line if line.endswith("\n") else line + "\n" + NO_EOL)
    return "".join(out)


@pytest.mark.parametrize(("text", "patch", "out"), [
    # At the line it names.
    (TEN, "@@ -2,3 +2,3 @@\n line 2\n-line 3\n+LINE 3\n line 4\n",
     TEN.replace("line 3\n", "LINE 3\n")),
    # Short headers: a count of one is left out.
    (TEN, "@@ -2 +2 @@\n-line 2\n+two\n", TEN.replace("line 2\n", "two\n")),
    (TEN, "@@ -1 +1,2 @@\n-line 1\n+one\n+uno\n", TEN.replace("line 1\n", "one\nuno\n")),
    (TEN, "@@ -10 +10 @@\n-line 10\n+ten\n", TEN.replace("line 10\n", "ten\n")),
    # Pure insertions (the old side is empty: "-N,0" means after line N) and deletions.
    (TEN, "@@ -3,0 +4,2 @@\n+new a\n+new b\n",
     TEN.replace("line 3\n", "line 3\nnew a\nnew b\n")),
    ("", "@@ -0,0 +1,2 @@\n+a\n+b\n", "a\nb\n"),
    ("x\n", "@@ -0,0 +1 @@\n+first\n", "first\nx\n"),
    (TEN, "@@ -4,2 +3,0 @@\n-line 4\n-line 5\n", TEN.replace("line 4\nline 5\n", "")),
    ("only\n", "@@ -1 +0,0 @@\n-only\n", ""),
    # Several hunks, the later ones shifted by what the earlier ones added or removed.
    (TEN, "@@ -1,2 +1,3 @@\n line 1\n+added\n line 2\n@@ -8,2 +9,2 @@\n line 8\n-line 9\n"
          "+nine\n",
     TEN.replace("line 1\n", "line 1\nadded\n").replace("line 9\n", "nine\n")),
    (TEN, "@@ -1,3 +1,1 @@\n-line 1\n-line 2\n line 3\n@@ -9 +7 @@\n-line 9\n+nine\n",
     TEN.replace("line 1\nline 2\n", "").replace("line 9\n", "nine\n")),
    # At an offset: the file gained lines above the hunk since the diff was made.
    ("extra\nextra\n" + TEN, "@@ -5,1 +5,1 @@\n-line 5\n+five\n",
     "extra\nextra\n" + TEN.replace("line 5\n", "five\n")),
    ("\n".join(TEN.splitlines()[3:]) + "\n", "@@ -5,1 +5,1 @@\n-line 5\n+five\n",
     "\n".join(TEN.splitlines()[3:]).replace("line 5", "five") + "\n"),
    # No newline at the end, on either side.
    ("a\nb", "@@ -1,2 +1,2 @@\n a\n-b\n" + NO_EOL + "+c\n" + NO_EOL, "a\nc"),
    ("a\nb", "@@ -2 +2 @@\n-b\n" + NO_EOL + "+b\n", "a\nb\n"),
    ("a\nb\n", "@@ -2 +2 @@\n-b\n+b\n" + NO_EOL, "a\nb"),
    ("a\nb", "@@ -1,2 +1,2 @@\n a\n b\n" + NO_EOL, "a\nb"),
    ("a\nb", "@@ -1,2 +1,3 @@\n a\n-b\n" + NO_EOL + "+b\n+c\n" + NO_EOL, "a\nb\nc"),
    # A marker before any line of the hunk has no line to act on.
    ("a\n", "@@ -1 +1 @@\n" + NO_EOL + "-a\n+b\n", "b\n"),
    # Headers and junk before the first hunk are skipped; a blank line is empty context.
    (TEN, "diff --git a/f b/f\nindex 1..2\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-line 1\n+1\n",
     TEN.replace("line 1\n", "1\n")),
    ("a\n\nb\n", "@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n", "a\n\nc\n"),
    ("a\r\n\r\nb\r\n", "@@ -1,3 +1,3 @@\n a\r\n\r\n-b\r\n+c\r\n", "a\r\n\r\nc\r\n"),
    # Trailing text after the last hunk is not part of it.
    (TEN, "@@ -1 +1 @@\n-line 1\n+1\nnot a hunk line\n", TEN.replace("line 1\n", "1\n")),
])
def test_apply(text: str, patch: str, out: str) -> None:
    assert apply(text, patch) == out


def test_the_nearest_match_wins() -> None:
    text = "x\n" * 5 + "target\n" + "y\n" * 5 + "target\n" + "z\n" * 20
    patch = "@@ -9 +9 @@\n-target\n+HIT\n"  # 3 lines below the first, 3 above the second
    assert apply(text, patch).split("\n").index("HIT") == 5  # earlier one first on a tie
    patch = "@@ -10 +10 @@\n-target\n+HIT\n"  # nearer the second
    assert apply(text, patch).split("\n").index("HIT") == 11
    patch = "@@ -8 +8 @@\n-target\n+HIT\n"
    assert apply(text, patch).split("\n").index("HIT") == 5


@pytest.mark.parametrize(("line", "at"), [(1, 0), (2, 1), (3, 2), (5, 4)])
def test_among_identical_lines_the_named_one_changes(line: int, at: int) -> None:
    out = apply("a\n" * 5, f"@@ -{line} +{line} @@\n-a\n+X\n").splitlines()
    assert out.index("X") == at and out.count("a") == 4


def test_the_offset_is_bounded() -> None:
    far = "pad\n" * MAX_OFFSET + "target\n"
    assert apply(far, "@@ -1 +1 @@\n-target\n+hit\n") == "pad\n" * MAX_OFFSET + "hit\n"
    farther = "pad\n" + far
    with pytest.raises(PatchError) as e:
        apply(farther, "@@ -1 +1 @@\n-target\n+hit\n")
    assert str(e.value) == (f"hunk 1 does not apply: its lines are not at line 1 (nor within "
                            f"{MAX_OFFSET} lines of it)")
    back = "target\n" + "pad\n" * (MAX_OFFSET + 5)
    assert apply(back, f"@@ -{MAX_OFFSET + 1} +{MAX_OFFSET + 1} @@\n-target\n+hit\n") == \
        "hit\n" + "pad\n" * (MAX_OFFSET + 5)
    with pytest.raises(PatchError, match="not at line 202 "):
        apply(back, f"@@ -{MAX_OFFSET + 2} +{MAX_OFFSET + 2} @@\n-target\n+hit\n")


@pytest.mark.parametrize(("text", "patch", "message"), [
    (TEN, "", "no hunks (@@ -a,b +c,d @@) in the patch"),
    (TEN, "--- a/f\n+++ b/f\n", "no hunks (@@ -a,b +c,d @@) in the patch"),
    (TEN, "@@ -1,2 +1,2 @@\n line 1\n-line 2\n", "hunk 1: truncated (expected 2 old and 2 new "
     "lines)"),
    (TEN, "@@ -1 +1 @@\n-line 1\n+x\n@@ -3,2 +3 @@\n-line 3\n+x\n",
     "hunk 2: truncated (expected 2 old and 1 new lines)"),
    (TEN, "@@ -1 +1 @@\n-line 1\n", "hunk 1: truncated (expected 1 old and 1 new lines)"),
    (TEN, "@@ -1,2 +1,2 @@\n line 1\n*line 2\n+x\n", "hunk 1: unexpected line '*line 2'"),
    (TEN, "@@ -1 +1 @@\n-line 1\n+x\n@@ -2 +2 @@\n-nope\n+y\n",
     "hunk 2 does not apply: its lines are not at line 2 (nor within 200 lines of it)"),
    ("a\nb\n", "@@ -1,2 +1,2 @@\n a\n-b\n" + NO_EOL + "+c\n",
     "hunk 1 does not apply: its lines are not at line 1"),
])
def test_errors(text: str, patch: str, message: str) -> None:
    with pytest.raises(PatchError) as e:
        apply(text, patch)
    assert str(e.value).startswith(message)


def test_parse_numbers_hunks_and_keeps_their_lines() -> None:
    hunks = parse("junk\n@@ -3,2 +3 @@\n a\n-b\n@@ -7 +6,2 @@\n-x\n" + NO_EOL + "+y\n+z\n")
    assert [(h.number, h.old_start, h.old, h.new) for h in hunks] == [
        (1, 3, ["a\n", "b\n"], ["a\n"]), (2, 7, ["x"], ["y\n", "z\n"])]


def test_a_failed_hunk_changes_nothing() -> None:
    patch = "@@ -1 +1 @@\n-line 1\n+changed\n@@ -5 +5 @@\n-nope\n+x\n"
    with pytest.raises(PatchError, match="hunk 2"):
        apply(TEN, patch)


LINES = st.lists(st.sampled_from(["a", "b", "c", "", "a b"]), max_size=12)


@settings(max_examples=150, deadline=None, database=None)
@given(LINES, st.booleans(), LINES, st.booleans(), st.integers(min_value=0, max_value=3))
def test_apply_of_a_diff_gives_the_new_text(a: list[str], a_eol: bool, b: list[str],
                                            b_eol: bool, context: int) -> None:
    old = "\n".join(a) + ("\n" if a_eol and a else "")
    new = "\n".join(b) + ("\n" if b_eol and b else "")
    patch = diff(old, new, context)
    if not patch:
        assert old == new
        return
    assert apply(old, patch) == new
