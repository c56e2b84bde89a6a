"""The small validators, value by value: what each reports, where, and at what severity
(issue 9 point 22; the real-file and library-conformance tests are in test_validators.py).
Validators are called directly: they are pure functions of (bytes, path, options)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.validation.validators import ini, json_, markdown, text, toml_

Row = tuple[str, int | None, int | None, str]


def problems(validator: Any, data: bytes | str, path: str = "f", **options: Any) -> list[Row]:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    result = validator.VALIDATOR.validate(raw, path, options)
    assert result.skipped is None, result
    return [(p.message, p.line, p.column, p.severity) for p in result.problems]


LONE = "unpaired surrogate escape in a string (not valid Unicode)"


def dup(key: str, first: int, line: int, column: int, severity: str = "warning") -> Row:
    return (f"duplicate key {key!r} (first at line {first})", line, column, severity)


@pytest.mark.parametrize("validator", [json_, ini, toml_, markdown, text])
def test_each_validator_names_itself(validator: Any) -> None:
    name = validator.__name__.rsplit(".", 1)[1].rstrip("_")
    assert validator.VALIDATOR.validate(b"", "f", {}).validator == name


# ============================================================================ json
@pytest.mark.parametrize(("text", "want"), [
    ('[{"a": 1, "a": 2}]', [dup("a", 1, 1, 11)]),
    ('[1, {"a": 1, "b": {"c": 1, "c": 2}}, {"a": 2}]', [dup("c", 1, 1, 28)]),
    ('{"x": [{"k": 1}, {"k": 2}], "x": 1}', [dup("x", 1, 1, 29)]),
    ('[[{"a": 1}], {"a": 1, "a": 1}]', [dup("a", 1, 1, 23)]),
    ('[{"a": 1}, {"a": 2}]', []),
    ('{"a": {"a": {"a": 1}}}', []),
    ('{"a": [], "b": {}, "a": [{}]}', [dup("a", 1, 1, 20)]),
    ('{"a": "a", "b": "a"}', []),
    ('["a", "a"]', []),
    ('[{"a": 1}, "a", "a"]', []),            # strings after an object in an array: values
    ('{"k": [{"a": 1}, "k"], "k2": 1}', []),
    ('{"a": 1,\n"b": 2,\n\n  "a": 3}', [dup("a", 1, 4, 3)]),
    ('{"a": 1, "a": 2, "a": 3}', [dup("a", 1, 1, 10), dup("a", 1, 1, 18)]),
    ('{"a":"x","a":"y"}', [dup("a", 1, 1, 10)]),  # no spaces: every character is a token
    ('[{"\\u0061": 1, "a": 2}]', [dup("a", 1, 1, 16)]),
])
def test_json_duplicate_keys_anywhere(text: str, want: list[Row]) -> None:
    assert problems(json_, text) == want
    errors = [(m, ln, c, "error") for m, ln, c, _ in want]
    assert problems(json_, text, duplicate_keys="error") == errors
    assert problems(json_, text, duplicate_keys="allow") == []


@pytest.mark.parametrize(("text", "want"), [
    ("NaN", [("NaN is not valid JSON (RFC 8259 has no NaN or Infinity)", 1, 1, "error")]),
    ('[1, -Infinity]', [("-Infinity is not valid JSON (RFC 8259 has no NaN or Infinity)", 1, 5,
                         "error")]),
    ('"\\ud800"', [("unpaired surrogate escape in a string (not valid Unicode)", 1, 2,
                    "error")]),
    ('{"\\udc00x": 1}', [("unpaired surrogate escape in a string (not valid Unicode)", 1, 3,
                          "error")]),
    ('["\\ud800\\u0041"]', [("unpaired surrogate escape in a string (not valid Unicode)", 1,
                             3, "error")]),
    ('["ok \\ud83d\\ude00", "\\u00e9\\ud800"]', [
        ("unpaired surrogate escape in a string (not valid Unicode)", 1, 28, "error")]),
    ('["\\n\\ud800"]', [("unpaired surrogate escape in a string (not valid Unicode)", 1, 5,
                         "error")]),
    ('["\\ud800", "x"]', [("unpaired surrogate escape in a string (not valid Unicode)", 1, 3,
                           "error")]),
    ('["\\ud800" ]', [("unpaired surrogate escape in a string (not valid Unicode)", 1, 3,
                       "error")]),
    ('["\\\\ud800"]', []),
    ('["\\ud800\\udc00", "\\udbff\\udfff"]', []),  # the edges of both halves pair
    ('["\\udfff"]', [(LONE, 1, 3, "error")]),
    ('["\\udbff"]', [(LONE, 1, 3, "error")]),
    ('["\\ud7ff\\ud800"]', [(LONE, 1, 9, "error")]),   # U+D7FF is no surrogate
    ('["\\ue000\\udc00"]', [(LONE, 1, 9, "error")]),
    ('["\\ud800x\\udc00"]', [(LONE, 1, 3, "error")]),  # halves apart do not pair
    # A pair, then a lone half: only the lone one is named (pairs at both edges).
    ('["\\ud800\\udc00\\ud800"]', [(LONE, 1, 15, "error")]),
    ('["\\udbff\\udfff\\udfff"]', [(LONE, 1, 15, "error")]),
    ('["\\udbff\\udc00\\ud800"]', [(LONE, 1, 15, "error")]),
    ('["\\udbff\\ue000"]', [(LONE, 1, 3, "error")]),
    ('{"a": 1e5, "b": -0.5, "c": true, "d": null, "e": false, "f": -12}', []),
    ("\ufeff[]", [("byte order mark at the start of the file (RFC 8259 forbids it)", 1, 1,
                   "error")]),
    ("\ufeff", [("byte order mark at the start of the file (RFC 8259 forbids it)", 1, 1,
                 "error"), ("empty document", 1, 1, "error")]),
    ("\ufeff {\"a\": 1, \"a\": 2}", [
        ("byte order mark at the start of the file (RFC 8259 forbids it)", 1, 1, "error"),
        dup("a", 1, 1, 12)]),
    (" \r\n", [("empty document", 1, 1, "error")]),
    ("  \n [1,\n  2,]", [("expecting value", 3, 5, "error")]),
    ('{"a": 1}\n', []),
    ('  "x"  ', []),
])
def test_json_values(text: str, want: list[Row]) -> None:
    assert problems(json_, text) == want


def test_json_depth_limit() -> None:
    over = ("nesting too deep (over 2 levels)", 1, 3, "error")
    assert problems(json_, "[[[]]]", max_depth=2) == [over]
    assert problems(json_, "[[]]", max_depth=2) == []
    assert problems(json_, '{"a": {"b": {}}}', max_depth=2) == [
        ("nesting too deep (over 2 levels)", 1, 13, "error")]
    assert problems(json_, '[{"a": 1, "a": 2}, [[1]]]', max_depth=2, duplicate_keys="error") \
        == [dup("a", 1, 1, 11, "error"), ("nesting too deep (over 2 levels)", 1, 21, "error")]
    assert problems(json_, "[1]", max_depth=0) == [
        ("invalid option: max_depth must be a whole number of at least 1, not 0", None, None,
         "error")]
    assert problems(json_, "[" * 1001 + "]" * 1001) == [
        ("nesting too deep (over 1000 levels)", 1, 1001, "error")]
    assert problems(json_, "[" * 500 + "]" * 500) == []


def test_json_too_deep_where_the_parser_gives_up() -> None:
    """Past the parser's stack but within the limit: the deepest place is named."""
    assert json_._too_deep("[[[]]] x", 5).message == "nesting too deep (3 levels)"
    assert (json_._too_deep("[[[]]] x", 5).line, json_._too_deep("[[[]]] x", 5).column) == (
        1, 3)
    assert json_._too_deep("[[{", 2).message == "nesting too deep (over 2 levels)"
    assert json_._too_deep("[[]] [", 9).message == "nesting too deep (2 levels)"


def test_json_scan_tokens() -> None:
    tokens = list(json_.scan(' {"a": [1, "s", {"b": null}], "c": -Infinity}'))
    assert tokens == [
        ("open", 1, "{"), ("key", 2, "a"), ("open", 7, "["), ("scalar", 8, "1"),
        ("string", 11, "s"), ("open", 16, "{"), ("key", 17, "b"), ("scalar", 22, "null"),
        ("close", 26, "}"), ("close", 27, "]"), ("key", 30, "c"),
        ("constant", 35, "-Infinity"), ("close", 44, "}")]
    with pytest.raises(ValueError, match="unexpected character at 1"):
        list(json_.scan("[x]"))


def test_json_locate() -> None:
    text = '{\n  "a": [10, {"b": "x"}, [true]],\n  "c": {"d": null}\n}'
    got = json_.locate(text, [(), ("a",), ("a", 0), ("a", 1, "b"), ("a", 2, 0), ("c", "d"),
                              ("missing",), ("a", 5)])
    assert got == {(): (1, 1), ("a",): (2, 8), ("a", 0): (2, 9), ("a", 1, "b"): (2, 19),
                   ("a", 2, 0): (2, 26), ("c", "d"): (3, 14)}
    assert json_.locate(text, []) == {}
    assert json_.locate('[1, [2, 3], 4]', [(2,), (1, 1)]) == {(2,): (1, 13), (1, 1): (1, 9)}
    assert json_.locate('{"a": {"x": 1}, "b": 2}', [("b",)]) == {("b",): (1, 22)}


def test_json_big_integers_and_syntax_after_them() -> None:
    big = "1" * 5000
    assert problems(json_, f"[{big}]") == []
    assert problems(json_, f'{{"a": {big}, "a": 1}}') == [dup("a", 1, 1, 5009)]
    assert problems(json_, f"[{big},]") == [("expecting value", 1, 5003, "error")]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=100, deadline=None, database=None)
@given(JSON_VALUES, st.sampled_from([None, 0, 2]))
def test_json_whatever_json_dumps_writes_is_valid(value: Any, indent: int | None) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    assert problems(json_, text) == []
    # And every value json.dumps wrote can be located where it starts.
    paths: list[tuple[Any, ...]] = [()]
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, child in items:
            paths.append((*path, k))
            stack.append(((*path, k), child))
    found = json_.locate(text, paths)
    assert set(found) == set(paths)


# ============================================================================ ini
@pytest.mark.parametrize(("text", "want"), [
    ("[a]\nx = 1\n", []),
    ("\ufeff[a]\nx = 1\n", []),
    ("[a]\nx = 1\n[b]\nx = 2\n", []),
    ("[a]\n[b]\n[a]\n", [("duplicate section [a] (first at line 1)", 3, None, "error")]),
    ("[b]\n[a]\n[a]\n", [("duplicate section [a] (first at line 2)", 3, None, "error")]),
    ("[a]\nx=1\n[b]\n x = 2\n[a]\n", [("duplicate section [a] (first at line 1)", 5, None,
                                        "error")]),
    ("[a]\nx = 1\n[b]\nx = 1\n[a]\n y = 1\nx = 2\n",
     [("duplicate section [a] (first at line 1)", 5, None, "error")]),
    ("[s]\nk = 1\n# k = 0\n;k\nK = 2\n", [
        ("duplicate option 'k' in section [s] (first at line 2)", 5, None, "error")]),
    ("[s]\nother = 1\nk = 1\n\nk: 2\n", [
        ("duplicate option 'k' in section [s] (first at line 3)", 5, None, "error")]),
    ("[t]\nk = 1\n[s]\nj = 0\nk = 1\nk = 2\n", [
        ("duplicate option 'k' in section [s] (first at line 5)", 6, None, "error")]),
    ("[s]\nx = 1\n  k = 1\nk = 2\nk = 3\n", [
        ("duplicate option 'k' in section [s] (first at line 4)", 5, None, "error")]),
    ("x = 1\n", [("'x = 1' comes before any [section] header", 1, None, "error")]),
    ("[a]\n%%% junk\n", [("cannot parse '%%% junk': expected 'name = value', 'name: value' "
                          "or a [section] header", 2, None, "error")]),
    ("[a]\nfmt = %(x)s\nv = a ; b # c\n", []),
])
def test_ini_values(text: str, want: list[Row]) -> None:
    assert problems(ini, text) == want


def test_ini_options() -> None:
    assert problems(ini, "[m]\nflag\n") != []
    assert problems(ini, "[m]\nflag\n", allow_no_value=True) == []
    assert problems(ini, "[m]\n", allow_no_value="yes") == [
        ("invalid option: allow_no_value must be true or false, not 'yes'", None, None,
         "error")]
    assert problems(ini, b"[a]\n\xff") == [("invalid UTF-8: invalid start byte (byte ff)", 2,
                                            1, "error")]


def test_ini_first_places_found_by_their_own_patterns() -> None:
    from configparser import ConfigParser

    p = ConfigParser()
    assert ini._first_section(p, "[a]\n[b]\n[a]\n", "a", 3) == 1
    assert ini._first_section(p, "[a]\n[b]\n[a]\n", "a", None) is None
    assert ini._first_section(p, "[b]\n[a]\n", "a", 2) is None
    assert ini._first_option(p, "[s]\nk=1\nk=2\n", "s", "k", 3) == 2
    assert ini._first_option(p, "[s]\nk=1\nk=2\n", "s", "k", None) is None
    assert ini._first_option(p, "[s]\nk=1\n", "t", "k", 3) is None
    assert ini._line(["a", " b "], 2) == "b"
    assert ini._line(["a"], 0) == ini._line(["a"], 2) == ""


# ============================================================================ toml
BOM_WARNING = ("byte order mark at the start of the file (valid TOML, but Python's tomllib "
               "rejects it)", 1, 1, "warning")


@pytest.mark.parametrize(("text", "want"), [
    ("a = 1\n", []),
    ("\ufeffa = 1\n", [BOM_WARNING]),
    ("\ufeffa = \n", [BOM_WARNING, ("invalid value", 1, 6, "error")]),
    ("a = 1\na = 2\n", [("cannot overwrite a value", 2, 6, "error")]),
    ("a = [1,\n", [("invalid value", 2, 1, "error")]),
    ('a = "x', [("unterminated string", 1, 7, "error")]),
    ("[t]\nx = 1\n[t]\n", [("cannot declare ('t',) twice", 3, 3, "error")]),
    (f"a = {'1' * 5000}\n", [("exceeds the limit (4300 digits) for integer string conversion: "
                               "value has 5000 digits; use sys.set_int_max_str_digits() to "
                               "increase the limit", None, None, "error")]),
    ("a = " + "[" * 5000 + "]" * 5000, [("nesting too deep (arrays or inline tables)", None,
                                         None, "error")]),
])
def test_toml_values(text: str, want: list[Row]) -> None:
    assert problems(toml_, text) == want


def test_toml_load_and_positions() -> None:
    assert toml_.load(b"a = 1\n") == (None, {"a": 1})
    assert toml_.load(b"\xef\xbb\xbfa = 1\n") == (None, {"a": 1})
    problem, doc = toml_.load(b"\xff")
    assert doc is None and problem is not None and problem.message.startswith("invalid UTF-8")
    p = toml_._decode_problem("a\nbc", "Bad thing (at end of document)")
    assert (p.message, p.line, p.column) == ("bad thing", 2, 3)
    p = toml_._decode_problem("x", "Bad thing (at line 4, column 2) here")
    assert (p.message, p.line, p.column) == ("bad thing here", 4, 2)
    p = toml_._decode_problem("x", "Some Error")
    assert (p.message, p.line, p.column) == ("some Error", None, None)


# ============================================================================ markdown
FENCE = "code fence {} is never closed (the rest of the file is code)"


@pytest.mark.parametrize(("text", "want"), [
    ("# t\n", []),
    ("", []),
    ("```\n", [(FENCE.format("```"), 1, 1, "error")]),
    ("   ```\n", [(FENCE.format("```"), 1, 4, "error")]),
    ("    ```\n", []),                       # indented code, not a fence
    ("``\n", []),
    ("```\n```\n", []),
    ("```\n````\n", []),                     # a longer closer closes
    ("````\n```\n", [(FENCE.format("````"), 1, 1, "error")]),
    ("~~~\n```\n", [(FENCE.format("~~~"), 1, 1, "error")]),
    ("```\n```  \t\n", []),
    ("```\n``` x\n", [(FENCE.format("```"), 1, 1, "error")]),
    ("```\n   ```\n", []),
    ("```\n    ```\n", [(FENCE.format("```"), 1, 1, "error")]),
    ("``` a`b\n", []),                       # a backtick in a backtick fence's info string
    ("~~~ a`b\n", [(FENCE.format("~~~"), 1, 1, "error")]),
    ("a\r\n```\r\nb\r\n", [(FENCE.format("```"), 2, 1, "error")]),
    ("a\r```\rb\r```\r", []),
    ("<!--\n```\n-->\n```\n", [(FENCE.format("```"), 4, 1, "error")]),
    ("<!-- one line -->\n```\n", [(FENCE.format("```"), 2, 1, "error")]),
    ("<!-- a\nb --> c\n```\n", [(FENCE.format("```"), 3, 1, "error")]),
    ("   <!--\n```\n", []),
    ("    <!--\n```\n", [(FENCE.format("```"), 2, 1, "error")]),
    ("```\n<!--\n```\n```\n", [(FENCE.format("```"), 4, 1, "error")]),
    ("\ufeff```\n", [(FENCE.format("```"), 1, 1, "error")]),
])
def test_markdown_fences_value_by_value(text: str, want: list[Row]) -> None:
    assert problems(markdown, text) == want


@pytest.mark.parametrize(("text", "want"), [
    ("---\na: 1\n---\n", []),
    ("---  \na: 1\n...\n", []),
    ("---\na: 1\n---\n```\n", [(FENCE.format("```"), 4, 1, "error")]),
    ("---\nx: |\n  ```\n---\n", []),          # a fence inside front matter is YAML text
    ("---\na: 1\n", [("front matter opened here is never closed (no --- line)", 1, 1,
                      "error")]),
    ("---\n", [("front matter opened here is never closed (no --- line)", 1, 1, "error")]),
    ("+++\na = 1\n", [("front matter opened here is never closed (no +++ line)", 1, 1,
                       "error")]),
    ("+++\na = 1\n...\n", [("front matter opened here is never closed (no +++ line)", 1, 1,
                            "error")]),
    ("+++\na = 1\n+++\n", []),
    ("+++\na = \n+++\n", [("front matter (TOML): invalid value", 2, 5, "error")]),
    ("---\na: [\n---\n", [("front matter (YAML): unclosed bracket '['", 2, 4, "error")]),
    ("---\na: 1\na: 2\n---\n", [("front matter (YAML): duplicate key 'a' (first at line 2)",
                                 3, 1, "warning")]),
    ("x\n---\na: [\n---\n", []),             # not at the start: a thematic break
    ("----\na: [\n", []),
])
def test_markdown_front_matter_value_by_value(text: str, want: list[Row]) -> None:
    assert problems(markdown, text) == want


def test_markdown_front_matter_options_are_passed_on() -> None:
    assert problems(markdown, "---\na: 1\na: 2\n---\n", duplicate_keys="error") == [
        ("front matter (YAML): duplicate key 'a' (first at line 2)", 3, 1, "error")]
    assert problems(markdown, b"\xff") == [("invalid UTF-8: invalid start byte (byte ff)", 1,
                                            1, "error")]


# ============================================================================ text
def skipped(data: bytes, path: str = "f", **options: Any) -> str | None:
    return text.VALIDATOR.validate(data, path, options).skipped


@pytest.mark.parametrize(("data", "path", "kind"), [
    (b"\x89PNG\r\n\x1a\n", "x", "binary file (PNG)"),
    (b"\x7fELF\x02", "x", "binary file (ELF)"),
    (b"%PDF-1.4", "x", "binary file (PDF)"),
    (b"RIFF\0\0\0\0WAVEfmt", "x", "binary file (RIFF WAVE)"),
    (b"RIFF\0\0\0\0AVI LIST", "x", "binary file (RIFF AVI)"),
    (b"BZh91AY&SY", "x", "binary file (bzip2)"),
    (b"anything", "a.PNG", "binary file (.png file)"),
    (b"anything", "dir.d/a.tar", "binary file (.tar file)"),
    (b"RIFF\0\0\0\0TEXT", "x", None),
    (b"BZh9 not bzip2", "x", None),
    (b"OTTO was here", "x", None),
    (b"text", "a.txt", None),
    (b"text", "noext", None),
])
def test_text_binary_kinds(data: bytes, path: str, kind: str | None) -> None:
    assert skipped(data, path) == kind
    assert text.binary_kind(data, path) == (None if kind is None else kind[len("binary file ("):
                                                                            -1])


def test_text_skip_for_path() -> None:
    v = text.VALIDATOR
    assert v.skip_for_path("a/b.whl", {}) == "binary file (.whl file)"
    assert v.skip_for_path("a/b.py", {}) is None
    assert v.skip_for_path("a/b.whl", {"encoding": 5}) is None  # check() reports the option


@pytest.mark.parametrize(("data", "options", "want"), [
    (b"ok\n", {}, []),
    (b"a\0b", {}, [("NUL byte in a text file", 1, 2, "error")]),
    ("\u00e9\u00e9\n\u00e9\0".encode(), {}, [("NUL byte in a text file", 2, 2, "error")]),
    ("x\n\0".encode("utf-16"), {}, [("NUL character in a text file", 2, 1, "error")]),
    ("x\0".encode("utf-32"), {}, [("NUL character in a text file", 1, 2, "error")]),
    ("x".encode("utf-16") + b"\xd8", {}, None),
    (b"\xff\xfe\x00\xd8", {}, [("invalid UTF-16: unexpected end of data", None, None,
                                "error")]),
    (b"caf\xe9", {"encoding": "utf-8"}, [("invalid UTF-8: unexpected end of data (byte e9)",
                                          1, 4, "error")]),
    (b"caf\xe9", {"encoding": "UTF8"}, [("invalid UTF-8: unexpected end of data (byte e9)",
                                         1, 4, "error")]),
    (b"\x80", {"encoding": "ascii"}, [("invalid ascii: ordinal not in range(128) (byte 80)",
                                       1, 1, "error")]),
    (b"caf\xe9", {"encoding": "latin-1"}, []),
    (b"x", {"encoding": 1}, [("invalid option: encoding must be a string, not 1", None, None,
                              "error")]),
    (b"x", {"max_line_length": 0}, [("invalid option: max_line_length must be a whole number "
                                     "of at least 1, not 0", None, None, "error")]),
    (b"abc\r\nabcd\nab", {"max_line_length": 3}, [
        ("line is 4 characters long (limit 3)", 2, 4, "warning")]),
    (b"abcd", {"max_line_length": 4}, []),
    ("\u00e9\u00e9\u00e9".encode(), {"max_line_length": 3}, []),
    (b"\xe9\xe9\xe9\xe9", {"max_line_length": 3, "encoding": "latin-1"}, [
        ("line is 4 characters long (limit 3)", 1, 4, "warning")]),
    (b"\xe9\xe9\xe9\xe9", {"max_line_length": 3}, [
        ("line is 4 characters long (limit 3)", 1, 4, "warning")]),
    ("abcd\n".encode("utf-16"), {"max_line_length": 3}, [
        ("line is 4 characters long (limit 3)", 1, 4, "warning")]),
])
def test_text_values(data: bytes, options: dict[str, Any], want: list[Row] | None) -> None:
    got = problems(text, data, **options)
    if want is None:
        assert [m for m, *_ in got] == ["invalid UTF-16: truncated data"]
    else:
        assert got == want


def test_text_long_lines_are_capped() -> None:
    data = b"".join(b"%02d long line\n" % i for i in range(30))
    got = problems(text, data, max_line_length=5)
    assert len(got) == text.MAX_LONG_LINES == 10
    assert [ln for _, ln, _, _ in got] == list(range(1, 11))
