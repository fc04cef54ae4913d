import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from core.rules.policy import load_policy_from
from core.rules.targets import Target
from core.adapters.checkout_targets import find_all_targets, find_targets
from core.rules.yaml_edit import (
    EditError,
    FieldChange,
    apply_to_tree,
    diff_image_fields,
    render_scalar,
    set_image,
)

GOLDEN = Path(__file__).parent / "golden" / "edit"
CASES = sorted(case.name for case in GOLDEN.iterdir() if (case / "case.yaml").is_file())
OLD = "sha256:" + "11" * 32
NEW = "sha256:" + "22" * 32


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fab_target(tag: str | None = "1.0", repository: str = "r.io/app", locator: str = "config.image",
               digest: str | None = None) -> Target:
    return Target("svc/dev/config/common.yaml", "fabrikate", locator, repository, tag, digest, "svc", "dev")


def load(text: str, version: tuple[int, int] | None = None):
    yaml = YAML(typ="safe", pure=True)
    if version:
        yaml.version = version
    return list(yaml.load_all(text))


# ------------------------------------------------------------------------------------------------------ golden


def test_golden_cases_are_present():
    assert len(CASES) >= 14


@pytest.mark.parametrize("case", CASES)
def test_golden_edit(case, tmp_path):
    spec = YAML(typ="safe").load((GOLDEN / case / "case.yaml").read_text())
    original, expected = tree_bytes(GOLDEN / case / "original"), tree_bytes(GOLDEN / case / "expected")
    edited_files = {name for name in expected if expected[name] != original.get(name)}
    assert edited_files and set(original) == set(expected)
    work = tmp_path / "repo"
    shutil.copytree(GOLDEN / case / "original", work)
    fields = load_policy_from(work).image_fields
    targets = [t for t in find_targets(work, spec["image"], spec.get("environments"), fields)
               if spec.get("env") in (None, t.env) and not (t.overridden_by or t.skip_reason)]  # as plan_bumps
    changes = apply_to_tree(work, [(t, spec["tag"], spec.get("digest")) for t in targets])
    assert tree_bytes(work) == expected
    assert {change.file for change in changes} == edited_files
    for name in edited_files:  # the reviewer's check agrees that only image fields moved
        diff = diff_image_fields(original[name].decode(), expected[name].decode(), name, fields)
        assert diff.only_image_fields, diff.other_differences
        assert set(diff.changes) == {change for change in changes if change.file == name}


def test_golden_edit_twice_is_a_no_op(tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(GOLDEN / "multi-doc-manifest" / "expected", work)
    targets = find_targets(work, "myacr.azurecr.io/shop/api")
    assert len(targets) == 3
    assert apply_to_tree(work, [(t, "2.4.1", None) for t in targets]) == []
    assert tree_bytes(work) == tree_bytes(GOLDEN / "multi-doc-manifest" / "expected")


# -------------------------------------------------------------------------------------------------- set_image

FAB = """\
config:
  image:
    repository: r.io/app  # repo
    tag: '1.0'
  replicas: 2
"""


def test_set_image_same_tag_changes_nothing():
    result = set_image(FAB, fab_target(), "1.0")
    assert result.text is FAB or result.text == FAB
    assert result.changes == ()


def test_set_image_keeps_single_quotes_and_reports_the_change():
    result = set_image(FAB, fab_target(), "1.10")
    assert result.text == FAB.replace("'1.0'", "'1.10'")
    assert result.changes == (FieldChange("svc/dev/config/common.yaml", "config.image.tag", "1.0", "1.10"),)


@pytest.mark.parametrize("value, plain", [
    ("20200212.1", False), ("1e10", False), ("0123", False), ("true", False), ("null", False), ("1.10", False),
    ("yes", False), ("y", False), ("on", False), ("2020-01-01", False), ("1_000", False), (".inf", False),
    ("", False), ("-x", False), ("a: b", False), ("1.2.3", True), ("dev-20200405.3", True), ("v1", True),
    ("myacr.azurecr.io/app:1.0", True), ("host:5000/r@sha256:ab", True),
])
def test_render_scalar_quotes_what_would_not_read_back_as_that_string(value, plain):
    text = render_scalar(value)
    assert (text == value) is plain
    for version in ((1, 1), (1, 2)):
        assert load(f"k: {text}\n", version) == [{"k": value}]


def test_render_scalar_keeps_quoting_style():
    assert render_scalar("it's", "'") == "'it''s'"
    assert render_scalar("1.0", '"') == '"1.0"'


def test_new_repository_is_written_where_the_kind_keeps_it():
    fab = set_image(FAB, fab_target(), "2.0", new_repository="other.io/app")
    assert fab.text == FAB.replace("r.io/app", "other.io/app").replace("'1.0'", "'2.0'")
    manifest = "kind: Pod\nspec:\n  containers:\n  - image: r.io/app:1.0\n"
    target = Target("p.yaml", "manifest", "doc[0].spec.containers[0].image", "r.io/app", "1.0", None, "p", "default")
    assert set_image(manifest, target, "2.0", new_repository="o.io/x").text == manifest.replace(
        "r.io/app:1.0", "o.io/x:2.0")
    kustomization = "images:\n- name: app\n  newTag: '1'\n"
    target = Target("kustomization.yaml", "kustomize", "images[0]", "app", "1", None, "app", "default")
    result = set_image(kustomization, target, "1", new_repository="r.io/app")
    assert result.text == "images:\n- name: app\n  newName: r.io/app\n  newTag: '1'\n"
    assert [c.locator for c in result.changes] == ["images[0].newName"]


def test_stale_target_is_refused():
    with pytest.raises(EditError, match="stale"):
        set_image(FAB, fab_target(repository="r.io/other"), "2.0")
    with pytest.raises(EditError, match="stale"):
        set_image(FAB, fab_target(locator="config.missing"), "2.0")
    manifest = "kind: Pod\nspec:\n  containers:\n  - image: r.io/other:1.0\n"
    target = Target("p.yaml", "manifest", "doc[0].spec.containers[0].image", "r.io/app", "1.0", None, "p", "default")
    with pytest.raises(EditError, match="stale"):
        set_image(manifest, target, "2.0")


def test_a_change_that_would_spread_through_an_anchor_is_refused():
    text = "config:\n  image:\n    repository: r.io/app\n    tag: &t '1.0'\n  sidecarTag: *t\n"
    with pytest.raises(EditError, match="sidecarTag"):
        set_image(text, fab_target(), "2.0")


def test_anchored_tag_without_aliases_is_edited_after_the_anchor():
    text = "config:\n  image:\n    repository: r.io/app\n    tag: &t !!str 1.0\n"
    assert set_image(text, fab_target(), "2.0").text == text.replace("!!str 1.0", '!!str "2.0"')


@pytest.mark.parametrize("text", [
    f"config:\n  image:\n    repository: r.io/app\n    digest: {OLD}\n",
    f"config:\n  image:\n    repository: r.io/app\n    tag: '1.0'\n    digest: {OLD}\n",
])
def test_digest_pinned_field_needs_a_new_digest(text):
    with pytest.raises(EditError, match="digest"):
        set_image(text, fab_target(), "2.0")


def test_digest_only_pin_stays_digest_only():
    text = f"config:\n  image:\n    repository: r.io/app\n    digest: {OLD}\n"
    assert set_image(text, fab_target(tag=None), "2.0", NEW).text == text.replace(OLD, NEW)


@pytest.mark.parametrize("tag, digest, repository", [
    ("bad tag", None, None), ("-x", None, None), ("1", "md5:nope", None), ("1", None, "r.io/app:1"),
])
def test_invalid_new_values_are_refused(tag, digest, repository):
    with pytest.raises(EditError):
        set_image(FAB, fab_target(), tag, digest, repository)


def test_block_scalar_tag_is_refused():
    text = "config:\n  image:\n    repository: r.io/app\n    tag: |\n      1.0\n"
    with pytest.raises(EditError, match="block scalar"):
        set_image(text, fab_target(), "2.0")


def test_unparseable_text_is_refused():
    with pytest.raises(EditError, match="does not parse"):
        set_image("config: [\n", fab_target(), "2.0")


def test_missing_tag_needs_a_sibling_to_follow():
    text = "config:\n  image:\n    repository: >-\n      r.io/app\n"
    with pytest.raises(EditError, match="cannot add"):
        set_image(text, fab_target(tag=None), "2.0")


def test_other_documents_bom_and_missing_newline_survive():
    text = ("\ufeff# first\nkind: Pod\nspec: {containers: [{image: 'r.io/app:1'}]}\n---\n"
            "kind: Pod\nspec: {containers: [{image: r.io/app:1}]}")
    target = Target("p.yaml", "manifest", "doc[1].spec.containers[0].image", "r.io/app", "1", None, "p", "default")
    result = set_image(text, target, "2")
    assert result.text == text[:-len("r.io/app:1}]}")] + "r.io/app:2}]}"


# ----------------------------------------------------------------------------------------------- apply_to_tree


def test_apply_to_tree_writes_nothing_when_one_edit_fails(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pod.yaml").write_text("kind: Pod\nspec: {containers: [{image: r.io/app:1}]}\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "pod.yaml").write_text(f"kind: Pod\nspec: {{containers: [{{image: 'r.io/app@{OLD}'}}]}}\n")
    before = tree_bytes(tmp_path)
    targets = find_all_targets(tmp_path)
    assert len(targets) == 2
    with pytest.raises(EditError, match="b/pod.yaml"):
        apply_to_tree(tmp_path, [(t, "2", None) for t in targets])
    assert tree_bytes(tmp_path) == before


def test_apply_to_tree_keeps_file_mode_and_refuses_paths_outside(tmp_path):
    pod = tmp_path / "pod.yaml"
    pod.write_text("kind: Pod\nspec: {containers: [{image: r.io/app:1}]}\n")
    pod.chmod(0o640)
    [target] = find_all_targets(tmp_path)
    apply_to_tree(tmp_path, [(target, "2", None)])
    assert pod.stat().st_mode & 0o777 == 0o640
    assert "r.io/app:2" in pod.read_text()
    outside = Target("../pod.yaml", "manifest", target.locator, "r.io/app", "1", None, "p", "default")
    with pytest.raises(EditError, match="inside"):
        apply_to_tree(tmp_path, [(outside, "3", None)])


# --------------------------------------------------------------------------------------------- diff_image_fields

RING = """\
# ring config
subcomponents:
  chart:
    config:
      image:
        repository: r.io/app
        tag: dev-1
      serviceName: app-dev
"""


def test_diff_only_tag_changed():
    diff = diff_image_fields(RING, RING.replace("dev-1", "dev-2"), "c.yaml")
    assert diff.only_image_fields
    assert diff.changes == (FieldChange("c.yaml", "subcomponents.chart.config.image.tag", "dev-1", "dev-2"),)
    assert diff.other_differences == ()


def test_diff_extra_key_changed_names_the_path():
    new = RING.replace("dev-1", "dev-2").replace("app-dev", "app-prod")
    diff = diff_image_fields(RING, new, "c.yaml")
    assert not diff.only_image_fields
    assert len(diff.changes) == 1
    assert diff.other_differences == ('subcomponents.chart.config.serviceName: "app-dev" -> "app-prod"',)


def test_diff_comment_and_style_only_is_clean():
    new = RING.replace("# ring config", "# edited").replace("tag: dev-1", "tag: 'dev-1'  # pinned")
    diff = diff_image_fields(RING, new, "c.yaml")
    assert diff.only_image_fields and diff.changes == () and diff.other_differences == ()


def test_diff_added_tag_counts_but_a_non_string_tag_does_not():
    added = RING.replace("        tag: dev-1\n", "")
    assert diff_image_fields(added, RING, "c.yaml").changes == (
        FieldChange("c.yaml", "subcomponents.chart.config.image.tag", None, "dev-1"),)
    numeric = diff_image_fields(RING, RING.replace("dev-1", "1.10"), "c.yaml")
    assert not numeric.only_image_fields
    assert numeric.other_differences == ('subcomponents.chart.config.image.tag: "dev-1" -> 1.1',)
    removed = diff_image_fields(RING, added, "c.yaml")
    assert removed.other_differences == ('subcomponents.chart.config.image.tag: "dev-1" -> <missing>',)


def test_diff_image_key_outside_config_is_not_an_image_field():
    old = "image:\n  tag: '1'\nconfig: {}\n"
    diff = diff_image_fields(old, old.replace("'1'", "'2'"), "c.yaml")
    assert not diff.only_image_fields and diff.other_differences == ('image.tag: "1" -> "2"',)


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    spec:
      initContainers: [{name: i, image: r.io/app:1}]
      containers: [{name: c, image: r.io/app:1}]
"""


def test_diff_manifest_images_and_other_fields():
    bumped = MANIFEST.replace("r.io/app:1", "r.io/app:2")
    diff = diff_image_fields(MANIFEST, bumped, "k8s/web.yaml")
    assert diff.only_image_fields
    assert [c.locator for c in diff.changes] == ["doc[0].spec.template.spec.initContainers[0].image",
                                                 "doc[0].spec.template.spec.containers[0].image"]
    scaled = diff_image_fields(MANIFEST, bumped.replace("replicas: 2", "replicas: 3"), "k8s/web.yaml")
    assert scaled.other_differences == ("doc[0].spec.replicas: 2 -> 3",)
    renamed = diff_image_fields(MANIFEST, MANIFEST.replace("kind: Deployment", "kind: DaemonSet"), "web.yaml")
    assert renamed.other_differences == ('doc[0].kind: "Deployment" -> "DaemonSet"',)
    added = diff_image_fields(MANIFEST, MANIFEST + "---\nkind: Service\n", "web.yaml")
    assert added.other_differences == ('doc[1]: <missing> -> {"kind": "Service"}',)


def test_diff_kustomization_fields():
    old = "images:\n- name: app\n  newTag: '1'\n"
    assert diff_image_fields(old, old.replace("'1'", "'2'"), "o/kustomization.yaml").changes == (
        FieldChange("o/kustomization.yaml", "images[0].newTag", "1", "2"),)
    renamed = diff_image_fields(old, old.replace("name: app", "name: db"), "o/kustomization.yaml")
    assert renamed.other_differences == ('images[0].name: "app" -> "db"',)


def test_diff_unparseable_version_is_not_clean():
    diff = diff_image_fields(RING, "subcomponents: [\n", "c.yaml")
    assert not diff.only_image_fields and diff.other_differences[0].startswith("new version does not parse")


# ------------------------------------------------------------------------------------------------- property

FIXTURE = """\
# ring config
subcomponents:
  chart:
    config:
      image:
        repository: myacr.azurecr.io/app  # the repo
        tag: dev-1  # current
      serviceName: app-dev
"""
FIXTURE_TARGET = Target("app/svc/dev/config/common.yaml", "fabrikate", "subcomponents.chart.config.image",
                        "myacr.azurecr.io/app", "dev-1", None, "svc", "dev")


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True))
def test_any_tag_reads_back_as_the_same_string(tag):
    result = set_image(FIXTURE, FIXTURE_TARGET, tag)
    for version in ((1, 1), (1, 2)):
        [data] = load(result.text, version)
        value = data["subcomponents"]["chart"]["config"]["image"]["tag"]
        assert type(value) is str and value == tag
    old_lines, new_lines = FIXTURE.splitlines(keepends=True), result.text.splitlines(keepends=True)
    assert len(new_lines) == len(old_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert changed == ([] if tag == "dev-1" else [6])
    assert new_lines[6].startswith("        tag: ") and new_lines[6].endswith("  # current\n")
