"""guardian.wirejson reads and writes exactly what the json package does."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian import wirejson

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=16)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=1000, deadline=None)
@given(VALUES, st.booleans())
def test_dumps_is_json_dumps(value: object, sort_keys: bool) -> None:
    assert wirejson.dumps(value, sort_keys=sort_keys) == json.dumps(value, sort_keys=sort_keys)


@settings(max_examples=1000, deadline=None)
@given(VALUES, st.sampled_from(["", " ", "\n\t", "\r\n "]), st.booleans())
def test_loads_is_json_loads(value: object, pad: str, as_bytes: bool) -> None:
    text = pad + json.dumps(value) + pad
    arg = text.encode() if as_bytes else text
    assert _same(wirejson.loads(arg), json.loads(arg))


@pytest.mark.parametrize("text", [
    "", " ", "{", "{not json", '{"a" 1}', "[1 2]", '{"a": 1} x', "[1,]", "\ufeff{}", "NaNx",
    '"\\ud800"', "[" * 100_000, b"\xff\xfe{\x00}\x00", b"\xef\xbb\xbf{}", b"\xc3("])
def test_loads_fails_or_reads_as_json_does(text: str | bytes) -> None:
    try:
        want: object = json.loads(text)
    except Exception as e:  # the very exception json raises
        with pytest.raises(type(e)) as got:
            wirejson.loads(text)
        assert str(got.value) == str(e)
        return
    assert _same(wirejson.loads(text), want)


def test_dumps_of_what_json_cannot_take_fails_as_json_does() -> None:
    for value in ({1j: 1}, [object()], {"a": {1, 2}}):
        with pytest.raises(TypeError) as want:
            json.dumps(value)
        with pytest.raises(TypeError) as got:
            wirejson.dumps(value)
        assert str(got.value) == str(want.value)
    assert wirejson.dumps([{2, 1}], default=sorted) == json.dumps([{2, 1}], default=sorted)
    assert wirejson.dumps({"b": 1, "a": [1.5, None]}, sort_keys=True, default=str) == \
        json.dumps({"b": 1, "a": [1.5, None]}, sort_keys=True, default=str)


def test_it_imports_neither_json_nor_re() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, guardian.wirejson as w; "
                          "w.dumps(w.loads('{\"a\": [1, 2.5, null]}')); "
                          "print('json' in sys.modules, 're' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
