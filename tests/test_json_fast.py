"""guardian.validation.json_fast.clean (what the agent hook's lean path allows under a rule
that reverts invalid JSON) says "clean" only of content the JSON validator finds no problem
in: on every file of JSONTestSuite's test_parsing and on generated texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.validation import json_fast
from guardian.validation.validators import get

SUITE = Path(__file__).parent / "conformance" / "JSONTestSuite" / "test_parsing"


def _no_problem(data: bytes) -> bool:
    return get("json").validate(data, "x.json", {}).problems == ()


@pytest.mark.skipif(not SUITE.is_dir(), reason="JSONTestSuite not vendored")
def test_clean_only_where_the_validator_finds_nothing_on_the_suite() -> None:
    seen = 0
    for f in sorted(SUITE.iterdir()):
        data = f.read_bytes()
        if json_fast.clean(data):
            seen += 1
            assert _no_problem(data), f.name
    assert seen > 50


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(VALUES, st.sampled_from(["", "\ufeff", " ", "\n"]), st.booleans())
def test_clean_implies_no_problem(value: object, lead: str, dup: bool) -> None:
    text = lead + json.dumps(value, allow_nan=True)
    if dup and text.startswith("{") and len(text) > 2:
        text = '{"k": 1, "k": 2, ' + text[1:]  # a duplicate key: a warning, to be located
    data = text.encode("utf-8", "surrogatepass")
    if json_fast.clean(data):
        assert _no_problem(data), text
    elif not json_fast.SURROGATE_ESCAPE.search(text):  # escapes: the validator's to look at
        assert not _no_problem(data), f"clean() refused a text with no problem: {text!r}"
