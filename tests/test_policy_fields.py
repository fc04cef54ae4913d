"""The `fields` rule option of autopilot.yaml: which key pair of a values map forms an image."""
from __future__ import annotations

import pytest

from core.rules.policy import PolicyError, load_policy
from core.rules.targets import ImageFields
from core.adapters.checkout_targets import find_targets


def rule(fields: str) -> str:
    return f'rules:\n  - image: "r.io/*"\n    fields: {fields}\n'


def test_fields_are_two_keys_of_one_map():
    policy = load_policy(rule("{repository: app.image.name, tag: app.image.version}"))
    assert policy.image_fields == (ImageFields(("app", "image"), "name", "version"),)
    assert load_policy(rule("{repository: img, tag: ver}")).image_fields == (ImageFields((), "img", "ver"),)


@pytest.mark.parametrize("fields, message", [
    ("{repository: image.name}", "needs both 'repository' and 'tag'"),
    ("{repository: image.name, tag: other.version}", "two keys of the same map"),
    ("{repository: image.name, tag: image.name}", "two keys of the same map"),
    ("{repository: 'image..name', tag: image.version}", "is not a dotted key path"),
    ("{repository: " + ".".join(["k"] * 11) + ", tag: image.version}", "is not a dotted key path"),
    ("{repository: '" + "a" * 5000 + "', tag: image.version}", "is not a dotted key path"),
    ("{repository: image.name, tag: image.version, digest: image.sha}", "unknown key 'digest'"),
    ("[image.name, image.version]", "must be a mapping"),
])
def test_bad_fields_name_the_line(fields, message):
    with pytest.raises(PolicyError, match=r"autopilot.yaml:3: .*" + message.replace("(", r"\(")):
        load_policy(rule(fields))


def test_fields_find_the_image_only_where_the_policy_says(tmp_path):
    config = tmp_path / "svc" / "config"
    config.mkdir(parents=True)
    (config / "common.yaml").write_text(
        "config:\n  app:\n    image: {name: r.io/worker, version: '2.0'}\n  other:\n    image: {name: r.io/x, version: '1'}\n")
    assert find_targets(tmp_path, "r.io/worker") == []  # {name, version}: nothing says version is the tag
    [target] = find_targets(tmp_path, "r.io/worker", fields=[ImageFields(("app", "image"), "name", "version")])
    assert (target.locator, target.tag) == ("config.app.image", "2.0")
    assert find_targets(tmp_path, "r.io/x", fields=[ImageFields(("app", "image"), "name", "version")]) == []


def test_ignore_comment_on_a_config_map_keeps_discovery_away(tmp_path):
    config = tmp_path / "svc" / "config"
    config.mkdir(parents=True)
    (config / "common.yaml").write_text(
        "config:\n  image:  # autopilot: ignore\n    repository: r.io/a\n    tag: '1'\n"
        "  sidecar:\n    image: {repository: r.io/a, tag: '1'}\n")
    assert [t.locator for t in find_targets(tmp_path, "r.io/a")] == ["config.sidecar.image"]
