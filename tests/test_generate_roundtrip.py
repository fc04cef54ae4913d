"""Finder and generator agree: after a bump of every golden Fabrikate tree, generating each environment in scope
shows the new tag for that image (and did not before), in helmrelease mode (no helm binary, no network)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from ruamel.yaml import YAML

from core.generate import generate
from core.images import same_image
from core.targets import find_targets
from core.yaml_edit import apply_to_tree

GOLDEN = Path(__file__).parent / "golden" / "edit"
FABRIKATE_CASES = sorted(case.name for case in GOLDEN.iterdir() if (case / "original" / "component.yaml").is_file())
HLD_URL = "https://dev.azure.com/fabrikam/hld/_git/hld"


def image_tags(value: Any, image: str) -> Iterator[str | None]:
    """Tags of every image of `image` in generated values: `image: {repository, tag}` maps and image strings."""
    if isinstance(value, dict):
        repository = value.get("repository")
        if isinstance(repository, str) and same_image(repository, image) and "tag" in value:
            yield str(value.get("tag"))
        for key, child in value.items():
            if isinstance(child, str) and key in ("image",) and child.split("@")[0].rsplit(":", 1)[0] == image:
                yield child.split("@")[0].rsplit(":", 1)[1] if ":" in child.split("@")[0] else None
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
            "pod-templates-any-kind"} <= set(FABRIKATE_CASES)


@pytest.mark.parametrize("case", FABRIKATE_CASES)
def test_generation_after_a_bump_shows_the_new_tag(case, tmp_path):
    spec = YAML(typ="safe").load((GOLDEN / case / "case.yaml").read_text())
    environments = spec.get("environments") or ["prod"]
    work = tmp_path / "hld"
    shutil.copytree(GOLDEN / case / "original", work)
    before = generated_tags(work, environments, spec["image"], spec.get("env"))
    targets = [t for t in find_targets(work, spec["image"], environments)
               if spec.get("env") in (None, t.env) and not (t.overridden_by or t.skip_reason)]
    assert targets, "the finder found nothing to edit"
    apply_to_tree(work, [(t, spec["tag"], spec.get("digest")) for t in targets])
    after = generated_tags(work, environments, spec["image"], spec.get("env"))
    assert set(after) == {environment.replace(" ", "-") for environment in environments}
    kept = {str(tag) for tag in spec.get("kept", ())}  # fields the case leaves alone on purpose
    for folder, tags in after.items():
        assert tags - kept == {spec["tag"]}, f"{folder}: generated tags {tags}"
        assert spec["tag"] not in before[folder]
