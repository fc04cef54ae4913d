"""Hypothesis properties over tags and repository names (issue #16, "Tests and figures").

1. Nothing outside the grammar is ever accepted: over the whole text space (any code point, surrogates
   included) and near the grammar's edges, intake's parse accepts a tag or a repository exactly when the
   independent oracle (tests/hostile/grammar_oracle.py) says the registry would.
2. Nothing inside the grammar ever changes anything but the tag bytes: bumping a small HLD (a Fabrikate config, a
   Deployment, a kustomization) to any valid tag rewrites the tag's own scalar and leaves every other byte.

Pure functions only (the parse intake runs before any storage call, and the byte-preserving editor); the
end-to-end cases through Azurite are in test_intake_names.py.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from core.model.payloads import AcrPush, PayloadError, parse_acr_event, parse_eventgrid
from core.rules.targets import Target, index_yaml
from core.adapters.checkout_targets import find_targets
from core.rules.yaml_edit import set_image
from tests.hostile.grammar_oracle import HOSTILE, valid_repository, valid_tag

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "deliveries"
ACR = json.loads((FIXTURES / "acr_push.json").read_text())
GRID = json.loads((FIXTURES / "eventgrid_push.json").read_text())

any_char = st.characters(codec=None, exclude_categories=())  # every code point, lone surrogates too
tag_alphabet = "abcXYZ019_.-"
# Built rather than drawn from_regex (much slower here): `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-` runs.
alnum = st.text(st.sampled_from("abz019"), min_size=1, max_size=8)
component = st.builds(lambda first, rest: first + "".join(sep + run for sep, run in rest), alnum,
                      st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--", "---"]), alnum), max_size=3))


def near_misses(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value with one character from anywhere put in anywhere, or with one character taken out."""
    def insert(data):
        text, char, at = data
        at = at % (len(text) + 1)
        return text[:at] + char + text[at:]

    def drop(data):
        text, at = data
        return text[:at % len(text)] + text[at % len(text) + 1:] if text else text

    return st.one_of(st.tuples(valid, any_char | st.sampled_from("\n\x00:# {*/@A_.-"), st.integers(0, 300))
                     .map(insert),
                     st.tuples(valid, st.integers(0, 300)).map(drop))


valid_tags = st.builds(lambda first, rest: first + rest, st.sampled_from("aZ9_"),
                       st.text(st.sampled_from(tag_alphabet), max_size=127))
tags = st.one_of(
    st.text(any_char, max_size=140),
    st.text(st.sampled_from(tag_alphabet), min_size=120, max_size=135),  # around the 128 bound
    valid_tags,
    near_misses(valid_tags),
    st.sampled_from(HOSTILE),
)
valid_repos = st.lists(component, min_size=1, max_size=6).map("/".join)
repositories = st.one_of(
    st.text(any_char, max_size=80),
    st.text(st.sampled_from("ab09._-/"), max_size=60),
    st.lists(st.text(st.sampled_from("abc012"), min_size=1, max_size=60), min_size=3, max_size=8)
      .map("/".join),  # around the 255 bound
    valid_repos,
    near_misses(valid_repos),
    st.tuples(valid_repos, st.integers(0, 300)).map(lambda d: d[0][:d[1] % len(d[0])] + d[0][d[1] % len(d[0]):]
                                                    .capitalize()),  # one upper-case letter
    st.sampled_from(HOSTILE),
)


def accepted(field: str, value: str, grid: bool) -> bool:
    """Whether intake's parse would enqueue a push carrying this value (ACR webhook or Event Grid event)."""
    if grid:
        body = copy.deepcopy(GRID)
        body[0]["data"]["target"][field] = value
        try:
            [event] = parse_eventgrid(body)
            return isinstance(parse_acr_event(event.data, "[0].data."), AcrPush)
        except PayloadError as exc:
            assert str(exc).startswith(f"[0].data.target.{field}") or (field == "repository" and not value)
            return False
    body = copy.deepcopy(ACR)
    body["target"][field] = value
    try:
        return isinstance(parse_acr_event(body), AcrPush)
    except PayloadError as exc:
        assert str(exc).startswith(f"target.{field}")
        return False


@settings(max_examples=300, deadline=None)
@given(value=tags, grid=st.booleans())
@example(value="1.0\n", grid=False)
@example(value="a" * 128, grid=False)
@example(value="a" * 129, grid=True)
@example(value="\ud800", grid=False)
def test_a_tag_is_accepted_exactly_when_the_grammar_allows_it(value, grid):
    assert accepted("tag", value, grid) == valid_tag(value)


@settings(max_examples=300, deadline=None)
@given(value=repositories, grid=st.booleans())
@example(value="/".join(["ab"] * 85), grid=False)
@example(value="/".join(["ab"] * 86), grid=False)
@example(value="a" * 255, grid=True)
@example(value="a" * 256, grid=True)
@example(value="fabrikam/app\n", grid=False)
@example(value="Fabrikam/app", grid=False)
def test_a_repository_is_accepted_exactly_when_the_grammar_allows_it(value, grid):
    assert accepted("repository", value, grid) == valid_repository(value)


# ---------------------------------------------------------------------------------------------- bump confinement

IMAGE = "myregistry.azurecr.io/fabrikam/app"
HLD = {
    "app/dev/config/common.yaml": f"""\
# dev settings for app
config:
  image:
    repository: {IMAGE}   # pushed by CI
    tag: "1.4.0"
  replicas: 2
subcomponents:
  sidecar:
    config:
      image: {{repository: myregistry.azurecr.io/fabrikam/other, tag: 2.0.0}}
""",
    "manifests/dev/deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  template:
    spec:
      containers:
        - name: app
          image: {IMAGE}:1.4.0
        - name: other
          image: 'myregistry.azurecr.io/fabrikam/other:1.4.0'
---
kind: ConfigMap
data: {{tag: 1.4.0}}
""",
    "overlays/dev/kustomization.yaml": f"""\
resources: [../../base]
images:
  - name: {IMAGE}
    newTag: 1.4.0 # bumped by autopilot
""",
}
FIELD = {"fabrikate": ("tag",), "kustomize": ("newTag",), "manifest": ()}


@pytest.fixture(scope="module")
def hld(tmp_path_factory) -> list[tuple[Target, str]]:
    root = tmp_path_factory.mktemp("hld")
    for rel, text in HLD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    targets = find_targets(root, IMAGE)
    assert sorted(t.kind for t in targets) == ["fabrikate", "kustomize", "manifest"]
    return [(t, HLD[t.file]) for t in targets]


def tag_span(text: str, target: Target) -> tuple[int, int, str | None]:
    node = index_yaml(text).get(target.index_path() + FIELD[target.kind])
    assert node is not None and node.kind == "scalar"
    return node.start.index, node.end.index, node.value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag=valid_tags)
@example(tag="1.10")      # a float to YAML: must come out quoted, still only the tag's bytes
@example(tag="true")
@example(tag="null")
@example(tag="0x1F")
@example(tag="1_000")
@example(tag="1.4.0")     # the current tag: no change at all
@example(tag="a" * 128)
def test_a_valid_tag_changes_only_the_tag_bytes(hld, tag):
    for target, text in hld:
        result = set_image(text, target, tag)
        if tag == "1.4.0":
            assert result.text == text and not result.changes
            continue
        start, end, _ = tag_span(text, target)
        new_start, new_end, value = tag_span(result.text, target)
        assert new_start == start
        assert result.text[:start] == text[:start]               # every byte before the tag scalar
        assert result.text[new_end:] == text[end:]               # every byte after it
        assert value == (f"{IMAGE}:{tag}" if target.kind == "manifest" else tag)
