"""Finder and generator agree: after a bump of every golden Fabrikate tree, generating each environment in scope
shows the new tag for that image (and did not before), in helmrelease mode (no helm binary, no network)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from core.generate import generate
from core.model.images import same_image
from core.rules.policy import load_policy_from
from core.adapters.checkout_targets import find_targets
from core.rules.yaml_edit import apply_to_tree

GOLDEN = Path(__file__).parent / "golden" / "edit"
FABRIKATE_CASES = sorted(case.name for case in GOLDEN.iterdir() if (case / "original" / "component.yaml").is_file())
HLD_URL = "https://dev.azure.com/fabrikam/hld/_git/hld"


def _named(name: Any, image: str) -> bool:
    return isinstance(name, str) and same_image(name, image)


def image_tags(value: Any, image: str) -> Iterator[str | None]:
    """Tags of every image of `image` in generated values and manifests, in every shape a chart takes it:
    {repository, tag}, {registry, repository, tag}, {name, tag|version}, image + imageTag, image strings."""
    if isinstance(value, dict):
        repository = value.get("repository")
        if isinstance(value.get("registry"), str) and isinstance(repository, str):
            repository = f"{value['registry']}/{repository}"
        for name, tag in ((repository, "tag"), (value.get("name"), "tag"), (value.get("name"), "version"),
                          (value.get("image"), "imageTag")):
            if _named(name, image) and tag in value:
                yield str(value[tag])
        for key, child in value.items():
            if isinstance(child, str) and key == "image" and "imageTag" not in value:
                reference = child.split("@")[0]
                if reference.rsplit(":", 1)[0] == image:
                    yield reference.rsplit(":", 1)[1]
            else:
                yield from image_tags(child, image)
    elif isinstance(value, list):
        for child in value:
            yield from image_tags(child, image)


def generated_tags(root: Path, environments: list[str], image: str, ring: str | None) -> dict[str, set]:
    generation = generate(root, environments, helm_mode="helmrelease", hld_repo_url=HLD_URL,
                          allowed_sources=["dev.azure.com"])
    tags: dict[str, set] = {}
    for generated in generation.files:
        folder, rest = generated.path.split("/", 1)
        if ring is not None and f"/{ring}/" not in f"/{rest}":
            continue
        for document in YAML(typ="safe").load_all(generated.content.decode()):
            tags.setdefault(folder, set()).update(image_tags(document, image))
    return tags


def test_every_fabrikate_golden_tree_takes_part():
    assert {"bedrock-ring-config", "legacy-root-override", "env-tag-file", "env-tag-file-scoped", "generator-alias",
            "pod-templates-any-kind", "config-image-string", "config-image-string-digest", "config-image-tag-siblings",
            "config-registry-map", "config-name-map", "config-policy-fields", "config-json"} <= set(FABRIKATE_CASES)


@pytest.mark.parametrize("case", FABRIKATE_CASES)
def test_generation_after_a_bump_shows_the_new_tag(case, tmp_path):
    spec = YAML(typ="safe").load((GOLDEN / case / "case.yaml").read_text())
    environments = spec.get("environments") or ["prod"]
    work = tmp_path / "hld"
    shutil.copytree(GOLDEN / case / "original", work)
    before = generated_tags(work, environments, spec["image"], spec.get("env"))
    targets = [t for t in find_targets(work, spec["image"], environments, load_policy_from(work).image_fields)
               if spec.get("env") in (None, t.env) and not (t.overridden_by or t.skip_reason)]
    assert targets, "the finder found nothing to edit"
    apply_to_tree(work, [(t, spec["tag"], spec.get("digest")) for t in targets])
    after = generated_tags(work, environments, spec["image"], spec.get("env"))
    assert set(after) == {environment.replace(" ", "-") for environment in environments}
    kept = {str(tag) for tag in spec.get("kept", ())}  # fields the case leaves alone on purpose
    for folder, tags in after.items():
        assert tags - kept == {spec["tag"]}, f"{folder}: generated tags {tags}"
        assert spec["tag"] not in before[folder]


def test_layered_environments_and_a_higher_env_file_agree_with_the_generator(tmp_path):
    """"staging west" reads staging.json first, then west.yaml; `west` reads west.yaml; prod reads the root's
    prod.yaml, which sits higher in the tree than the ring: each environment's winning file is the one edited."""
    files = {
        "component.yaml": "name: hld\nsubcomponents:\n- {name: ring, method: local, path: ./ring}\n",
        "config/prod.yaml": "subcomponents:\n  ring:\n    subcomponents:\n      chart:\n        config:\n"
                            "          image: {tag: root-prod}\n",
        "ring/component.yaml": "name: ring\nsubcomponents:\n"
                               "- {name: chart, type: helm, method: helm, source: 'https://c', path: x}\n",
        "ring/config/common.yaml": "subcomponents:\n  chart:\n    config:\n"
                                   "      image: {repository: r.io/a, tag: common}\n",
        "ring/config/west.yaml": "subcomponents:\n  chart:\n    config:\n      image: {tag: west}\n",
        "ring/config/staging.json": '{"subcomponents": {"chart": {"config": {"image": {"tag": "staging"}}}}}\n',
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    environments = ["staging west", "west", "prod", "qa"]
    assert generated_tags(tmp_path, environments, "r.io/a", None) == {
        "staging-west": {"staging"}, "west": {"west"}, "prod": {"root-prod"}, "qa": {"common"}}
    targets = find_targets(tmp_path, "r.io/a", environments)
    assert {t.file: t.environments for t in targets if not t.overridden_by} == {
        "ring/config/staging.json": ("staging-west",), "ring/config/west.yaml": ("west",),
        "config/prod.yaml": ("prod",), "ring/config/common.yaml": ("qa",)}
    apply_to_tree(tmp_path, [(t, "2.0", None) for t in targets if not t.overridden_by])
    assert generated_tags(tmp_path, environments, "r.io/a", None) == {
        "staging-west": {"2.0"}, "west": {"2.0"}, "prod": {"2.0"}, "qa": {"2.0"}}
    assert (tmp_path / "ring/config/staging.json").read_text() == \
        '{"subcomponents": {"chart": {"config": {"image": {"tag": "2.0"}}}}}\n'
