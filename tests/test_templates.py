"""``render`` templates: ``$name``, ``${name}``, ``$$``, line/column errors, the size limit
(issue 9 point 22: text after the last placeholder and ``$$`` could be lost unnoticed)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.batch.templates import cache_info, compile_template
from guardian.errors import TemplateError

VARS = {"a": "A", "name": "World", "_x1": 7, "b": ""}


@pytest.mark.parametrize(("template", "out"), [
    ("", ""),
    ("plain text", "plain text"),
    ("$a", "A"),
    ("${a}", "A"),
    ("Hello, $name!", "Hello, World!"),
    ("Hello, ${name}s and $name", "Hello, Worlds and World"),
    ("$a$a", "AA"),
    ("x$a", "xA"),
    ("$a tail after the last placeholder", "A tail after the last placeholder"),
    ("$$", "$"),
    ("$$a", "$a"),
    ("cost: $$5 and $$$a", "cost: $5 and $A"),
    ("$_x1 items", "7 items"),
    ("[$b]", "[]"),
    ("line1\n$a\nline3\n", "line1\nA\nline3\n"),
    ("$name_suffix", None),  # the name is the longest run: no value for $name_suffix
])
def test_render(template: str, out: str | None) -> None:
    c = compile_template(template)
    if out is None:
        with pytest.raises(TemplateError, match=r"line 1: no value for \$name_suffix"):
            c.render(VARS)
    else:
        assert c.render(VARS) == out


def test_names() -> None:
    assert compile_template("$a ${b} $$c $a").names == {"a", "b"}
    assert compile_template("no placeholders $$").names == set()


@pytest.mark.parametrize(("template", "where"), [
    ("$", "line 1, column 1"),
    ("ab $ cd", "line 1, column 4"),
    ("ok\nok $a\n  $1", "line 3, column 3"),
    ("${a", "line 1, column 1"),
    ("${1a}", "line 1, column 1"),
    ("x\n\n\n$-", "line 4, column 1"),
    ("\n $", "line 2, column 2"),
    ("\n\n  $ ", "line 3, column 3"),
])
def test_a_lone_dollar_is_an_error_with_its_place(template: str, where: str) -> None:
    with pytest.raises(TemplateError) as e:
        compile_template(template)
    assert str(e.value) == f"{where}: '$' must start $name, ${{name}} or $$"


def test_a_missing_value_names_its_line() -> None:
    c = compile_template("one\ntwo $a\n\nfour ${missing}\n")
    with pytest.raises(TemplateError) as e:
        c.render({"a": 1})
    assert str(e.value) == "line 4: no value for $missing"
    with pytest.raises(TemplateError, match=r"^line 2: no value for \$x$"):
        compile_template("\n$x").render({})
    c = compile_template("$$\n$$ $gone")
    with pytest.raises(TemplateError, match=r"^line 2: no value for \$gone$"):
        c.render({})


def test_the_parts_and_the_line_of_each_placeholder() -> None:
    c = compile_template("a\n$x\nb $y\n\nc ${z}")
    assert [(v, t) for v, t, _ in c.parts] == [(False, "a\n"), (True, "x"), (False, "\nb "),
                                               (True, "y"), (False, "\n\nc "), (True, "z")]
    assert [line for v, _, line in c.parts if v] == [2, 3, 5]
    assert [t for _, t, _ in compile_template("$$\n$$").parts] == ["$", "\n", "$"]


def test_the_size_limit() -> None:
    c = compile_template("ab$a$a")  # 2 + 3 + 3 = 8 characters
    values = {"a": "xyz"}
    assert c.render(values, limit=8) == "abxyzxyz"
    with pytest.raises(TemplateError) as e:
        c.render(values, limit=7)
    assert str(e.value) == "the rendered text would be longer than 7 characters"
    with pytest.raises(TemplateError, match="longer than 1,000 characters"):
        compile_template("$a").render({"a": "x" * 1001}, limit=1000)
    with pytest.raises(TemplateError, match="longer than 1 characters"):
        compile_template("ab").render({}, limit=1)
    assert compile_template("").render({}, limit=0) == ""


def test_the_same_template_is_compiled_once() -> None:
    text = "cached $a " + str(id(object()))
    hits, misses = cache_info()
    first = compile_template(text)
    assert cache_info() == (hits, misses + 1)
    assert compile_template(text) is first
    assert cache_info() == (hits + 1, misses + 1)
    assert first.digest == compile_template(text).digest != compile_template(text + " ").digest
    assert len(first.digest) == 64


@settings(max_examples=80, deadline=None, database=None)
@given(st.text(alphabet="ab$ {}\n_x1", max_size=30),
       st.dictionaries(st.sampled_from(["a", "b", "x", "_x1", "ab", "b_"]),
                       st.text(alphabet="q$ \n", max_size=5)))
def test_renders_as_string_template_does(template: str, values: dict[str, str]) -> None:
    """Same syntax as ``string.Template``: the same text, or an error where it has one."""
    try:
        want: str | None = string.Template(template).substitute(values)
    except (KeyError, ValueError):
        want = None
    try:
        got: str | None = compile_template(template).render(values)
    except TemplateError:
        got = None
    assert got == want
