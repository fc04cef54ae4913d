"""YAML bombs and oversized YAML in repository files (issue #16, item 6).

The edit check loaded the file being bumped and expanded every alias into plain data: 72 s for 10^7 nodes, and
a larger bomb exhausted memory, blocking every unrelated bump. Every repository YAML document now goes through
`core.rules.repo_yaml`: its alias expansion is counted on the composed node graph before anything is constructed.
"""
from __future__ import annotations

import time

import pytest

from core.errors import Permanent
from core.generate import GenerationError, generate
from core.rules.policy import PolicyError, load_policy
from core.rules.repo_yaml import ALIAS_EXPANSION_BUDGET, MAX_REPO_YAML_BYTES, RepoYamlError, load_all
from core.rules.targets import Target
from core.adapters.checkout_targets import find_targets
from core.rules.yaml_edit import EditError, apply_to_tree, diff_image_fields, set_image
from devkit.gitrepos import bare_repo, branches, file_at
from tests.test_bump import REGISTRY, make_service, push
from tests.fakes.records import records  # noqa: F401  (the fixture)


def laughs(levels: int, indent: str = "") -> str:
    """Billion laughs: level n is ten aliases of level n-1, so the last level expands to 10**levels scalars."""
    text = f"{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in range(1, levels):
        text += f"{indent}l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]\n"
    return text


def pod(name: str, tag: str, extra: str = "") -> str:
    return (f"kind: Pod\nmetadata:\n  name: {name}\n{extra}spec:\n  containers:\n"
            f"  - image: {REGISTRY}/{name}:{tag}\n")


@pytest.mark.timeout(60)
def test_billion_laughs_in_the_file_being_bumped_is_refused_in_well_under_a_second(tmp_path):
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod/web.yaml").write_text(pod("web", "1.0.0", "bomb:\n" + laughs(9, "  ")))
    [target] = find_targets(tmp_path, f"{REGISTRY}/web")  # indexing never expands aliases
    started = time.perf_counter()
    with pytest.raises(EditError) as raised:
        apply_to_tree(tmp_path, [(target, "1.0.1", None)])
    assert time.perf_counter() - started < 1.0
    assert isinstance(raised.value, Permanent)
    assert str(raised.value).startswith("prod/web.yaml:9: document expands to more than")
    assert "image" not in str(raised.value)
    assert b"web:1.0.0" in (tmp_path / "prod/web.yaml").read_bytes()  # nothing written


@pytest.mark.timeout(60)
def test_review_diff_of_a_bomb_is_not_clean_and_answers_at_once():
    old = pod("web", "1.0.0", "bomb:\n" + laughs(9, "  "))
    started = time.perf_counter()
    diff = diff_image_fields(old, old.replace("1.0.0", "1.0.1"), "prod/web.yaml")
    assert time.perf_counter() - started < 1.0
    assert not diff.only_image_fields
    assert diff.other_differences[0].startswith("old version does not parse: prod/web.yaml:9: document expands")


@pytest.mark.timeout(120)
def test_bump_of_a_bombed_file_fails_permanently_and_unrelated_bumps_still_land(tmp_path, records):
    url = bare_repo(tmp_path, {
        "prod/web.yaml": pod("web", "1.0.0", "bomb:\n" + laughs(6, "  ")),  # 10^6 nodes: seconds before
        "prod/api.yaml": pod("api", "2.0.0"),
    }, name="m")
    service = make_service(url, records, tmp_path, is_hld=False)
    head = branches(url)["main"]
    started = time.perf_counter()
    with pytest.raises(EditError, match=r"prod/web\.yaml:\d+: document expands to more than"):
        service.process([push("web", "1.0.1")])
    assert time.perf_counter() - started < 30  # git round trips only; the check itself is milliseconds
    assert branches(url)["main"] == head
    result = service.process([push("api", "2.0.1")])
    assert result.commit is not None
    assert f"{REGISTRY}/api:2.0.1".encode() in file_at(url, "main", "prod/api.yaml")


WEB_POD_IMAGE = "doc[0].spec.containers[0].image"


def test_aliases_within_the_budget_still_load_and_edit():
    # 10^4 expanded nodes: a generous config that shares blocks through anchors is fine.
    text = pod("web", "1.0.0", "shared:\n" + laughs(4, "  "))
    assert len(load_all(text, "prod/web.yaml")) == 1
    target = Target("prod/web.yaml", "manifest", WEB_POD_IMAGE, f"{REGISTRY}/web", "1.0.0", None, "web", "prod")
    assert f"{REGISTRY}/web:1.0.1" in set_image(text, target, "1.0.1").text


def aliased(copies: int) -> str:
    """An anchored list of 1,000 scalars (1,001 nodes) and a list of `copies` aliases of it."""
    return "a: &a [" + ", ".join(["x"] * 1000) + "]\nb: [" + ", ".join(["*a"] * copies) + "]\n"


def test_budget_counts_only_what_aliases_add():
    # 1,005 nodes are written. 100 aliases of the 1,001-node list expand to 100,100 nodes that are not written:
    # just over the 100,000 budget. 99 aliases (99,099 more) stay within it.
    with pytest.raises(RepoYamlError, match=r"^f\.yaml:2: document expands to more than 101,005 nodes"):
        load_all(aliased(100), "f.yaml")
    assert len(load_all(aliased(99), "f.yaml")[0]["b"]) == 99
    many_written = "k: [" + ", ".join(["x"] * (ALIAS_EXPANSION_BUDGET + 10)) + "]\n"  # no alias at all
    assert len(load_all(many_written, "f.yaml")[0]["k"]) == ALIAS_EXPANSION_BUDGET + 10


def test_self_containing_document_is_refused_with_its_line():
    target = Target("c.yaml", "fabrikate", "config.image", "r.io/app", "1", None, "app", "default")
    with pytest.raises(EditError, match=r"^c\.yaml:2: the document contains itself"):
        set_image("config:\n  loop: &l [*l]\n  image: {repository: r.io/app, tag: '1'}\n", target, "2")


def test_oversized_file_being_bumped_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "big.yaml").write_text(pod("web", "1.0.0") + "#" * MAX_REPO_YAML_BYTES + "\n")
    target = Target("big.yaml", "manifest", WEB_POD_IMAGE, f"{REGISTRY}/web", "1.0.0", None, "web", "default")
    with pytest.raises(EditError, match=r"^big\.yaml: is [\d,]+ bytes, more than the 1,048,576-byte limit"):
        apply_to_tree(tmp_path, [(target, "1.0.1", None)])


@pytest.mark.timeout(60)
def test_bomb_in_autopilot_yaml_is_a_policy_error_with_its_line():
    started = time.perf_counter()
    with pytest.raises(PolicyError, match=r"^autopilot\.yaml:\d+: document expands to more than"):
        load_policy("paused: false\nx:\n" + laughs(9, "  "))
    assert time.perf_counter() - started < 1.0


@pytest.mark.timeout(60)
def test_bomb_in_component_yaml_is_refused_with_its_file_and_line(tmp_path):
    (tmp_path / "component.yaml").write_text("name: root\nsubcomponents: []\nx:\n" + laughs(9, "  "))
    started = time.perf_counter()
    with pytest.raises(GenerationError, match=r"^component\.yaml:\d+: document expands to more than"):
        generate(tmp_path, ["prod"])
    assert time.perf_counter() - started < 1.0


def test_static_stream_errors_name_the_line_of_the_file(tmp_path):
    (tmp_path / "component.yaml").write_text("name: root\ntype: static\npath: m\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m/all.yaml").write_text("kind: A\n---\nkind: B\n---\nkind: C\nbad: [\n")
    with pytest.raises(GenerationError, match=r"m/all\.yaml:7: invalid YAML"):
        generate(tmp_path, ["prod"])
