"""YAML as Helm and kubectl read it (go-yaml v2 typing), and the deterministic writer."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from core.generate import GenerationError
from core.generate.documents import load_yaml
from core.generate.emitter import dump


@pytest.mark.parametrize("text, value", [
    ("yes", True), ("On", True), ("n", False), ("OFF", False), ("yEs", "yEs"),
    ("0644", 420), ("0o17", 15), ("0x1F", 31), ("0b101", 5), ("1_000", 1000), ("-12", -12), ("08", 8.0),
    ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5), ("-.inf", -math.inf),
    ("12:30", "12:30"), ("2020-01-01", "2020-01-01"), ("1.2.3", "1.2.3"), ("=", "="),
    ("~", None), ("", None), ("Null", None), ('"yes"', "yes"), ("'0644'", "0644"),
])
def test_scalars_are_typed_like_go_yaml(text, value):
    loaded = load_yaml(f"key: {text}\n", "t")["key"]
    assert loaded == value and type(loaded) is type(value)


def test_mapping_keys_keep_their_text_and_merge_keys_work():
    assert load_yaml("80: http\non: 1\nbase: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n", "t") == {
        "80": "http", "on": 1, "base": {"x": 1}, "derived": {"x": 1, "y": 2}}


def test_duplicate_keys_and_complex_keys_are_refused():
    with pytest.raises(GenerationError, match=r"t:2: invalid YAML: .*found duplicate key \"a\""):
        load_yaml("a: 1\na: 2\n", "t")
    with pytest.raises(GenerationError, match="mapping keys must be scalars"):
        load_yaml("? [a]\n: 1\n", "t")


def test_self_referencing_documents_are_refused():
    with pytest.raises(GenerationError, match="t:1: the document contains itself through a YAML alias"):
        load_yaml("a: &a [*a]\n", "t")


def test_dump_sorts_keys_and_quotes_what_would_change_type():
    text = dump({"b": ["yes", "0644", "12:30", "plain/text:1", "", "a b", None, True, 1.0e20, "x\ny"],
                 "a": {"nested": {}, "list": []}}, budget=10_000, label="t")
    assert text == ('a:\n  list: []\n  nested: {}\nb:\n- "yes"\n- "0644"\n- "12:30"\n- plain/text:1\n- ""\n'
                    '- "a b"\n- null\n- true\n- 1.0e+20\n- "x\\ny"\n')


def test_dump_stops_at_the_budget():
    with pytest.raises(GenerationError, match="t: output exceeds the size limit"):
        dump({"k": ["v" * 100] * 100}, budget=5_000, label="t")


def test_dump_refuses_values_yaml_cannot_carry_back():
    with pytest.raises(GenerationError, match="cannot write a value of type bytes"):
        dump({"k": b"raw"}, budget=1_000, label="t")


scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1)
           | st.floats(allow_nan=False) | st.text(max_size=30))
trees = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(trees)
def test_dump_reads_back_identically_with_go_typing_and_yaml_1_2(value):
    text = dump(value, budget=1 << 20, label="t")
    assert load_yaml(text, "t") == value
    assert YAML(typ="safe", pure=True).load(text) == value
