import shutil
from pathlib import Path

import pytest

from core.model.images import ImageRefError
from core.rules.targets import Target, YamlIndexError, format_locator, index_yaml, parse_locator
from core.adapters.checkout_targets import find_all_targets, find_targets

GOLDEN = Path(__file__).parent / "golden" / "edit"
APP = "myacr.azurecr.io/app-repo-fabrikam"
DIGEST = "sha256:" + "cd" * 32


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def ring_config(repository: str, tag: str) -> str:
    return (f"subcomponents:\n  chart:\n    config:\n      image:\n        repository: {repository}\n"
            f"        tag: {tag}\n")


def test_bedrock_ring_configs_are_found_with_service_and_ring(tmp_path):
    shutil.copytree(GOLDEN / "bedrock-ring-config" / "original", tmp_path, dirs_exist_ok=True)
    targets = find_targets(tmp_path, APP)
    assert targets == [
        Target("fabrikam-project/fabrikam/dev/config/common.yaml", "fabrikate", "subcomponents.chart.config.image",
               APP, "dev-20200401.1", None, "fabrikam", "dev", environments=("common",)),
        Target("fabrikam-project/fabrikam/prod/config/common.yaml", "fabrikate", "subcomponents.chart.config.image",
               APP, "prod-20200320.2", None, "fabrikam", "prod", environments=("common",)),
    ]
    assert targets[0].key == "fabrikam-project/fabrikam/dev/config/common.yaml#subcomponents.chart.config.image"


def test_legacy_root_tag_is_reported_as_override_of_the_ring(tmp_path):
    shutil.copytree(GOLDEN / "legacy-root-override" / "original", tmp_path, dirs_exist_ok=True)
    by_env = {t.env: t for t in find_targets(tmp_path, APP)}
    assert set(by_env) == {"dev", "prod"}  # the root block has no repository: it is no target of its own
    assert by_env["dev"].overridden_by == "config/common.yaml:11"
    assert by_env["prod"].overridden_by is None


def test_override_maps_subcomponent_names_to_directories_through_component_yaml(tmp_path):
    write(tmp_path, "component.yaml", "name: root\nsubcomponents:\n- {name: shop, method: local, path: ./shop-src}\n")
    write(tmp_path, "shop-src/component.yaml",
          "name: shop\nsubcomponents:\n- name: api\n  type: component\n  method: local\n  path: ./services/api\n")
    write(tmp_path, "shop-src/services/api/component.yaml", "name: api\nsubcomponents:\n- {name: chart, type: helm}\n")
    write(tmp_path, "shop-src/services/api/config/common.yaml", ring_config("r.io/api", "1"))
    # the service-level block sets only the repository: not the tag, so no override from it
    write(tmp_path, "shop-src/config/common.yaml",
          "subcomponents:\n  api:\n    subcomponents:\n      chart:\n        config:\n"
          "          image: {repository: r.io/api}\n")
    # the root's `shop` block maps onto shop-src/, `api` onto services/api; it sets the tag in prod.yaml
    write(tmp_path, "config/prod.yaml",
          "namespace: shop\nsubcomponents:\n  shop:\n    subcomponents:\n      api:\n        subcomponents:\n"
          "          chart:\n            config:\n              image:\n                tag: pinned\n")
    found = [t for t in find_targets(tmp_path, "r.io/api", ["prod"]) if t.file.endswith("api/config/common.yaml")]
    assert len(found) == 1
    assert found[0].overridden_by == "config/prod.yaml:10"
    assert (found[0].service, found[0].env) == ("services", "api")
    # generating `common` (no environment) reads the service's own file: there it is the target
    [common] = [t for t in find_targets(tmp_path, "r.io/api", ["common"]) if t.file.endswith("api/config/common.yaml")]
    assert common.overridden_by is None and common.environments == ("common",)


def test_highest_ancestor_wins_the_override(tmp_path):
    write(tmp_path, "repo/svc/ring/config/common.yaml", ring_config("r.io/a", "1"))
    write(tmp_path, "repo/svc/config/common.yaml",
          "subcomponents:\n  ring:\n    subcomponents:\n      chart:\n        config:\n          image:\n"
          "            tag: svc-level\n")
    write(tmp_path, "repo/config/common.yaml",
          "subcomponents:\n  svc:\n    subcomponents:\n      ring:\n        subcomponents:\n          chart:\n"
          "            config:\n              image:\n                digest: " + DIGEST + "\n")
    [ring] = [t for t in find_targets(tmp_path, "r.io/a") if t.file.startswith("repo/svc/ring/")]
    assert ring.overridden_by == "repo/config/common.yaml:9"


def test_ancestor_for_another_ring_is_no_override(tmp_path):
    write(tmp_path, "repo/svc/dev/config/common.yaml", ring_config("r.io/a", "1"))
    write(tmp_path, "repo/svc/config/common.yaml",
          "subcomponents:\n  prod:\n    subcomponents:\n      chart:\n        config:\n          image:\n"
          "            tag: other-ring\n")
    assert [t.overridden_by for t in find_targets(tmp_path, "r.io/a")] == [None]


def test_fabrikate_labels_for_short_paths_and_nested_values(tmp_path):
    write(tmp_path, "config/common.yaml",
          "config:\n  image: {repository: r.io/a, tag: '1'}\n"
          "subcomponents:\n  cache:\n    config:\n      redis:\n        image:\n          repository: r.io/a\n")
    write(tmp_path, "frontend/config/prod.yml", ring_config("r.io/a", "2"))
    targets = find_targets(tmp_path, "r.io/a")
    assert [(t.file, t.locator, t.tag, t.service, t.env) for t in targets] == [
        ("config/common.yaml", "config.image", "1", "default", "default"),
        ("config/common.yaml", "subcomponents.cache.config.redis.image", None, "cache", "default"),
        ("frontend/config/prod.yml", "subcomponents.chart.config.image", "2", "frontend", "default"),
    ]


def test_fabrikate_tag_is_read_as_written_and_digest_is_reported(tmp_path):
    write(tmp_path, "a/b/config/common.yaml",
          f"config:\n  image:\n    repository: r.io/a\n    tag: 1.10\n    digest: {DIGEST}\n")
    [target] = find_targets(tmp_path, "r.io/a")
    assert (target.tag, target.digest) == ("1.10", DIGEST)


def test_image_maps_outside_config_or_without_repository_are_not_targets(tmp_path):
    write(tmp_path, "svc/config/common.yaml",
          "image: {repository: r.io/a, tag: '1'}\n"  # not under config:
          "config:\n  image: {tag: '2'}\n  other:\n    image: {repository: 'not an image', tag: '3'}\n")
    write(tmp_path, "svc/values.yaml", "config:\n  image: {repository: r.io/a, tag: '4'}\n")  # not in config/
    assert find_all_targets(tmp_path) == []


MANIFESTS = """\
apiVersion: v1
kind: Pod
metadata: {name: pod}
spec:
  containers: [{name: c, image: "r.io/a:pod"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: deploy}
spec:
  template:
    spec:
      initContainers:
      - {name: init, image: r.io/a:init}
      containers:
      - {name: main, image: r.io/a:deploy}
      - {name: sidecar, image: r.io/sidecar:1}
---
{kind: StatefulSet, metadata: {name: sts}, spec: {template: {spec: {containers: [{image: r.io/a:sts}]}}}}
---
{kind: DaemonSet, metadata: {name: ds}, spec: {template: {spec: {containers: [{image: r.io/a:ds}]}}}}
---
{kind: ReplicaSet, metadata: {name: rs}, spec: {template: {spec: {containers: [{image: r.io/a:rs}]}}}}
---
{kind: Job, metadata: {name: job}, spec: {template: {spec: {containers: [{image: "r.io/a@%s"}]}}}}
---
{kind: CronJob, metadata: {name: cron},
 spec: {jobTemplate: {spec: {template: {spec: {containers: [{image: r.io/a:cron}]}}}}}}
---
kind: ConfigMap
metadata: {name: not-a-workload}
data: {image: "r.io/a:cm"}
---
kind: Deployment
metadata: {name: wrong-place}
spec: {containers: [{image: r.io/a:wrong}]}
""" % DIGEST


def test_manifest_workloads_and_init_containers(tmp_path):
    write(tmp_path, "prod/apps/all.yaml", MANIFESTS)
    write(tmp_path, "root.yaml", "kind: Pod\nmetadata: {name: top}\nspec: {containers: [{image: r.io/a:top}]}\n")
    targets = find_targets(tmp_path, "r.io/a")
    assert [(t.service, t.env, t.tag, t.digest) for t in targets] == [
        ("pod", "prod", "pod", None),
        ("deploy", "prod", "init", None),
        ("deploy", "prod", "deploy", None),
        ("sts", "prod", "sts", None),
        ("ds", "prod", "ds", None),
        ("rs", "prod", "rs", None),
        ("job", "prod", None, DIGEST),
        ("cron", "prod", "cron", None),
        # containers anywhere under spec, as kustomize's image transformer (LegacyFilter) updates them
        ("wrong-place", "prod", "wrong", None),
        ("top", "default", "top", None),
    ]
    assert {t.kind for t in targets} == {"manifest"}
    assert targets[1].locator == "doc[1].spec.template.spec.initContainers[0].image"
    assert targets[7].locator == "doc[6].spec.jobTemplate.spec.template.spec.containers[0].image"
    assert [t.locator for t in find_targets(tmp_path, "r.io/sidecar")] == [
        "doc[1].spec.template.spec.containers[1].image"]


def test_kustomize_images_match_new_name_or_name(tmp_path):
    write(tmp_path, "overlays/dev/kustomization.yaml",
          "images:\n- name: web\n  newName: r.io/web\n  newTag: '1'\n"
          "- name: r.io/web\n  newName: r.io/elsewhere\n"
          f"- name: r.io/web\n  digest: {DIGEST}\n"
          "- {newTag: no-name}\n")
    write(tmp_path, "Kustomization", "images:\n- {name: r.io/web, newTag: root}\n")
    targets = find_targets(tmp_path, "r.io/web")
    assert [(t.file, t.locator, t.repository, t.tag, t.digest, t.service, t.env) for t in targets] == [
        ("Kustomization", "images[0]", "r.io/web", "root", None, "web", "default"),
        ("overlays/dev/kustomization.yaml", "images[0]", "r.io/web", "1", None, "web", "dev"),
        ("overlays/dev/kustomization.yaml", "images[2]", "r.io/web", None, DIGEST, "web", "dev"),
    ]
    assert [t.locator for t in find_targets(tmp_path, "r.io/elsewhere")] == ["images[1]"]


def test_broken_big_git_and_symlinked_files_are_skipped(tmp_path):
    write(tmp_path, "dev/good.yaml", "kind: Pod\nmetadata: {name: good}\nspec: {containers: [{image: r.io/a:1}]}\n")
    write(tmp_path, "dev/broken.yaml", "kind: Pod\nspec: {containers: [{image: r.io/a:2}\n")
    write(tmp_path, "dev/dupe.yaml", "kind: Pod\nkind: Pod\nspec: {containers: [{image: r.io/a:3}]}\n")
    write(tmp_path, "dev/binary.yaml", "")
    (tmp_path / "dev/binary.yaml").write_bytes(b"kind: Pod\n\xff\xfe")
    big = "kind: Pod\nspec: {containers: [{image: r.io/a:4}]}\n" + "# padding\n" * 120_000
    write(tmp_path, "dev/big.yaml", big)
    write(tmp_path, ".git/x.yaml", "kind: Pod\nspec: {containers: [{image: r.io/a:5}]}\n")
    (tmp_path / "dev/link.yaml").symlink_to(tmp_path / "dev/good.yaml")
    assert [t.tag for t in find_targets(tmp_path, "r.io/a")] == ["1"]


def test_other_images_are_not_selected(tmp_path):
    shutil.copytree(GOLDEN / "multi-doc-manifest" / "original", tmp_path, dirs_exist_ok=True)
    api = find_targets(tmp_path, "myacr.azurecr.io/shop/api")
    assert [t.service for t in api] == ["shop-api", "shop-api", "shop-nightly-report"]
    assert {t.repository for t in find_all_targets(tmp_path)} == {
        "myacr.azurecr.io/shop/api", "myacr.azurecr.io/shop/api-db", "docker.io/envoyproxy/envoy"}


def test_find_targets_rejects_a_garbage_image_name(tmp_path):
    with pytest.raises(ImageRefError):
        find_targets(tmp_path, "not an image")


@pytest.mark.parametrize("path, text", [
    (("subcomponents", "chart", "config", "image"), "subcomponents.chart.config.image"),
    (("doc", 1, "spec", "containers", 0, "image"), "doc[1].spec.containers[0].image"),
    (("images", 2), "images[2]"),
    (("subcomponents", "k8s.io/x", "config", 'we"ird', "a b"), 'subcomponents."k8s.io/x".config."we\\"ird"."a b"'),
    (("m", 0, 3, "x"), "m[0][3].x"),
])
def test_locator_round_trip(path, text):
    assert format_locator(path) == text
    assert parse_locator(text) == path


def test_index_positions_and_duplicates():
    text = "a:\n  b: &x 'q'  # c\n  c: *x\n---\nd: [1, {e: f}]\n"
    index = index_yaml(text)
    assert index.documents == 2
    b = index.get((0, "a", "b"))
    assert (b.kind, b.value, b.style, b.anchor) == ("scalar", "q", "'", "x")
    assert text[b.start.index:b.end.index] == "&x 'q'"
    alias = index.get((0, "a", "c"))
    assert (alias.kind, alias.text(), text[alias.start.index:alias.end.index]) == ("alias", "q", "*x")
    assert index.scalar_text((1, "d", 1, "e")) == "f"
    assert index.get((1, "d")).flow and index.get((1, "d")).children == (0, 1)
    with pytest.raises(YamlIndexError):
        index_yaml("a: 1\na: 2\n")
    with pytest.raises(YamlIndexError):
        index_yaml("a: [\n")


def test_a_file_rewritten_with_the_same_size_and_time_is_read_again(tmp_path):
    """The parse cache must not serve a stale tag when git rewrites a file within one timestamp tick."""
    import os

    path = tmp_path / "prod" / "app.yaml"
    path.parent.mkdir()
    path.write_text("kind: Pod\nspec:\n  containers:\n  - image: r.io/app:1.0.1\n")
    stat = path.stat()
    assert [t.tag for t in find_targets(tmp_path, "r.io/app")] == ["1.0.1"]
    path.write_text("kind: Pod\nspec:\n  containers:\n  - image: r.io/app:1.0.2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert [t.tag for t in find_targets(tmp_path, "r.io/app")] == ["1.0.2"]
    assert [t.tag for t in find_all_targets(tmp_path, candidates=["prod/app.yaml"])] == ["1.0.2"]
    assert find_all_targets(tmp_path, candidates=[]) == []


# ------------------------------------------------------------------------------- per-environment resolution


RING = "fabrikam-project/fabrikam/dev/config/"


def test_tag_only_environment_file_is_the_target_for_its_environment(tmp_path):
    shutil.copytree(GOLDEN / "env-tag-file" / "original", tmp_path, dirs_exist_ok=True)
    by_file = {t.file: t for t in find_targets(tmp_path, APP, ["DEV", "prod"]) if t.env == "dev"}
    assert set(by_file) == {RING + "DEV.yaml", RING + "common.yaml"}
    dev = by_file[RING + "DEV.yaml"]
    assert (dev.locator, dev.tag, dev.environments) == ("subcomponents.chart.config.image", "20190912.1", ("DEV",))
    assert dev.repository == APP and dev.repository_from == RING + "common.yaml:6"
    assert by_file[RING + "common.yaml"].environments == ("prod",)
    # the bump narrows discovery to files mentioning the repository: the tag-only file is still reached
    narrowed = find_all_targets(tmp_path, candidates=[RING + "common.yaml"], environments=["DEV"])
    assert [(t.file, t.overridden_by) for t in narrowed] == [
        (RING + "DEV.yaml", None), (RING + "common.yaml", RING + "DEV.yaml:5")]


def test_environments_default_to_every_config_file_named_plus_common(tmp_path):
    shutil.copytree(GOLDEN / "env-tag-file" / "original", tmp_path, dirs_exist_ok=True)
    by_file = {t.file: t.environments for t in find_targets(tmp_path, APP) if t.env == "dev"}
    assert by_file == {RING + "DEV.yaml": ("DEV",), RING + "common.yaml": ("common",)}


def test_layered_environment_takes_the_first_named_file(tmp_path):
    write(tmp_path, "svc/ring/config/common.yaml", ring_config("r.io/a", "1"))
    write(tmp_path, "svc/ring/config/west.yaml", "subcomponents:\n  chart:\n    config:\n      image: {tag: w}\n")
    write(tmp_path, "svc/ring/config/staging.json",
          '{"subcomponents": {"chart": {"config": {"image": {"tag": "s"}}}}}\n')
    [target] = [t for t in find_targets(tmp_path, "r.io/a", ["staging west"]) if not t.overridden_by]
    assert (target.file, target.tag, target.environments) == ("svc/ring/config/staging.json", "s", ("staging-west",))


def test_a_winning_value_that_is_no_image_map_is_reported_not_edited(tmp_path):
    from core.workers.bump import plan_bumps
    from core.rules.policy import Policy
    from core.model.workitems import ImagePushed

    write(tmp_path, "svc/ring/config/common.yaml", ring_config("r.io/a", "1"))
    write(tmp_path, "svc/ring/config/DEV.yaml", "subcomponents:\n  chart:\n    config:\n      image: [r.io/a]\n")
    targets = find_targets(tmp_path, "r.io/a", ["DEV"])
    [blocked] = [t for t in targets if t.skip_reason]
    assert blocked.file == "svc/ring/config/DEV.yaml"
    assert "svc/ring/config/DEV.yaml:4 sets the image for DEV as a sequence" in blocked.skip_reason
    item = ImagePushed(event_id="e1", trace_id="t" * 32, registry="r.io", repository="a", tag="2", digest="",
                       media_type="", pushed_at="", acr_event_id="a1")
    outcomes, _ = plan_bumps(targets, [item], Policy(), lambda target: None)
    assert sorted((o.target.file, o.action) for o in outcomes) == [
        ("svc/ring/config/DEV.yaml", "skip"), ("svc/ring/config/common.yaml", "skip")]
    assert [o.reason for o in outcomes if o.target is blocked] == [blocked.skip_reason]


def test_a_deeply_nested_file_is_no_target_and_breaks_nothing(tmp_path):
    deep = "spec:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)) + "  " * 301 + "containers: []\n"
    write(tmp_path, "prod/deep.yaml", "kind: X\n" + deep)
    write(tmp_path, "svc/config/common.yaml",
          "config:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)) + "  " * 301 + "image: r.io/a:1\n")
    write(tmp_path, "prod/web.yaml", "kind: Pod\nmetadata: {name: web}\nspec: {containers: [{image: r.io/a:2}]}\n")
    assert "2" in [t.tag for t in find_targets(tmp_path, "r.io/a")]  # the plain manifest is still found
