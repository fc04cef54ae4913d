"""Component tree walking, config layering, namespaces, disabled components and static manifests."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.generate import GenerationError, generate
from tests.test_generate_helpers import component, documents, files_of, write

HLD_URL = "https://dev.azure.com/org/project/_git/hld"


def chart(directory: str = "chart") -> dict:
    return {f"{directory}/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n"}


def release_values(content: bytes) -> dict:
    release = next(document for document in documents(content) if document["kind"] == "HelmRelease")
    return release["spec"].get("values", {})


def helm_release(root: Path, environments=("prod",)) -> dict[str, bytes]:
    return files_of(generate(root, list(environments), helm_mode="helmrelease", hld_repo_url=HLD_URL))


def test_nested_components_give_one_file_per_component_in_their_logical_directory(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "infra", "path": "./infra"}),
        "infra/component.yaml": component(
            "infra", {"name": "monitoring", "type": "component", "method": "local", "source": "./parts",
                      "path": "mon"}),
        "infra/parts/mon/component.yaml": component(
            "monitoring-stack", {"name": "manifests", "type": "static", "path": "./yaml"}),
        "infra/parts/mon/yaml/a.yaml": "kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n",
    })
    files = files_of(generate(tmp_path, ["prod"]))
    assert sorted(files) == [
        "prod/infra/infra.yaml",
        "prod/infra/monitoring/manifests.yaml",
        "prod/infra/monitoring/monitoring-stack.yaml",
        "prod/root.yaml",
    ]
    assert files["prod/root.yaml"] == b"" and files["prod/infra/monitoring/monitoring-stack.yaml"] == b""
    assert files["prod/infra/monitoring/manifests.yaml"] == (
        b"---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n")


def test_component_json_and_generator_alias_are_read(tmp_path):
    write(tmp_path, {
        "component.json": component("root", {"name": "s", "generator": "static", "path": "m"}),
        "m/x.yaml": "a: 1\n",
    })
    assert files_of(generate(tmp_path, ["prod"]))["prod/s.yaml"] == b"---\na: 1\n"


def test_environment_layers_first_named_wins_then_common(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "app", "type": "helm", "path": "chart"}),
        **chart(),
        "config/common.yaml": {"subcomponents": {"app": {"config": {
            "a": "common", "b": "common", "c": "common", "nested": {"x": "common", "y": "common"}}}}},
        "config/azure.yaml": {"subcomponents": {"app": {"config": {
            "b": "azure", "c": "azure", "nested": {"y": "azure"}}}}},
        "config/prod.yaml": {"subcomponents": {"app": {"config": {"c": "prod", "list": ["prod"]}}}},
    })
    generation = generate(tmp_path, ["prod azure", "azure"], helm_mode="helmrelease", hld_repo_url=HLD_URL)
    assert generation.environments == ("prod-azure", "azure")
    files = files_of(generation)
    assert release_values(files["prod-azure/app.yaml"]) == {
        "a": "common", "b": "azure", "c": "prod", "list": ["prod"], "nested": {"x": "common", "y": "azure"}}
    assert release_values(files["azure/app.yaml"]) == {
        "a": "common", "b": "azure", "c": "azure", "nested": {"x": "common", "y": "azure"}}


def test_parent_config_beats_the_childs_own_environment_file(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "svc", "path": "svc"}),
        "config/common.yaml": {"subcomponents": {"svc": {"subcomponents": {"chart": {"config": {
            "image": {"tag": "from-root-common"}}}}}}},
        "svc/component.yaml": component("svc", {"name": "chart", "type": "helm", "path": "chart"}),
        **chart("svc/chart"),
        "svc/config/prod.yaml": {"subcomponents": {"chart": {"config": {
            "image": {"tag": "from-svc-prod", "repository": "acr.io/svc"}}}}},
    })
    values = release_values(helm_release(tmp_path)["prod/svc/chart.yaml"])
    assert values == {"image": {"tag": "from-root-common", "repository": "acr.io/svc"}}


def test_inlined_subcomponent_gets_only_its_block_of_the_parent_config(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "app", "type": "helm", "path": "chart"}),
        **chart(),
        "config/common.yaml": {"config": {"parentOnly": True},
                               "subcomponents": {"app": {"config": {"replicas": 3}}, "other": {"config": {"x": 1}}}},
    })
    assert release_values(helm_release(tmp_path)["prod/app.yaml"]) == {"replicas": 3}


def test_namespace_first_set_wins_and_inject_adds_it_only_where_missing(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "svc", "path": "svc"}),
        "config/common.yaml": {"subcomponents": {"svc": {"subcomponents": {"web": {"namespace": "from-parent"}}}}},
        "svc/component.yaml": component("svc", {"name": "web", "type": "static", "path": "m"}),
        "svc/config/common.yaml": {"subcomponents": {"web": {"namespace": "from-child", "injectNamespace": True}}},
        "svc/m/all.yaml": """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: without
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: with
              namespace: kept
            ---
            apiVersion: v1
            kind: Namespace
            """,
    })
    content = files_of(generate(tmp_path, ["prod"]))["prod/svc/web.yaml"]
    assert [document["metadata"].get("namespace") for document in documents(content)] == [
        "from-parent", "kept", "from-parent"]


def test_without_inject_namespace_static_documents_are_left_alone(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "config/common.yaml": {"subcomponents": {"web": {"namespace": "ns"}}},
        "m/a.yaml": "kind: A\nmetadata: {name: a}\n",
    })
    assert files_of(generate(tmp_path, ["prod"]))["prod/web.yaml"] == b"---\nkind: A\nmetadata: {name: a}\n"


def test_disabled_components_are_skipped_and_an_environment_can_enable_them_again(tmp_path):
    write(tmp_path, {
        "component.yaml": component(
            "root", {"name": "svc", "path": "svc"}, {"name": "extra", "type": "static", "path": "m"},
            {"name": "self-disabled", "path": "sd"}),
        "config/common.yaml": {"subcomponents": {"svc": {"disabled": True}, "extra": {"disabled": True}}},
        "config/dev.yaml": {"subcomponents": {"extra": {"disabled": False}}},
        "svc/component.yaml": component("svc"),
        "sd/component.yaml": component("sd"),
        "sd/config/common.yaml": {"disabled": True},
        "m/a.yaml": "kind: A\n",
    })
    generation = generate(tmp_path, ["prod", "dev"])
    assert sorted(files_of(generation)) == ["dev/extra.yaml", "dev/root.yaml", "prod/root.yaml"]


def test_static_files_are_concatenated_in_name_order_as_written(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "m/b.yaml": "# second file\nkind: B\ndata:\n  mode: 0644\n",
        "m/a.yaml": "---\nkind: A1\n---\n# only a comment\n---\n\nkind: A2\n...\n",
        "m/c.yml": "",
        "m/sub/ignored.yaml": "kind: Ignored\n",
    })
    content = files_of(generate(tmp_path, ["prod"]))["prod/web.yaml"]
    assert content == (b"---\nkind: A1\n---\nkind: A2\n...\n---\n# second file\nkind: B\ndata:\n  mode: 0644\n")


def test_static_file_that_is_not_yaml_fails_with_its_path(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "m/broken.yaml": "kind: [unclosed\n",
    })
    with pytest.raises(GenerationError, match=r"m/broken\.yaml.*invalid YAML"):
        generate(tmp_path, ["prod"])


def test_static_document_that_is_not_a_mapping_is_refused(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "web", "type": "static", "path": "m"}),
        "m/README.md": "Just some words\n",
    })
    with pytest.raises(GenerationError, match=r"m/README\.md: document 1 is not a mapping"):
        generate(tmp_path, ["prod"])


def test_missing_static_directory_and_missing_component_file_fail_with_their_paths(tmp_path):
    write(tmp_path, {"component.yaml": component("root", {"name": "web", "type": "static", "path": "nope"})})
    with pytest.raises(GenerationError, match="nope/: static directory not found"):
        generate(tmp_path, ["prod"])
    write(tmp_path, {"component.yaml": component("root", {"name": "svc", "path": "svc"})})
    with pytest.raises(GenerationError, match=r"svc/: no component\.yaml or component\.json"):
        generate(tmp_path, ["prod"])


def test_generation_is_deterministic_and_sorted(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "z", "path": "z"}, {"name": "a", "type": "helm",
                                                                          "path": "chart"}),
        **chart(),
        "config/common.yaml": {"subcomponents": {"a": {"config": {"b": 1, "a": {"d": 2, "c": [3, {"f": 4, "e": 5}]}}}}},
        "z/component.yaml": component("z"),
    })
    first = generate(tmp_path, ["prod", "dev"], helm_mode="helmrelease", hld_repo_url=HLD_URL)
    second = generate(tmp_path, ["prod", "dev"], helm_mode="helmrelease", hld_repo_url=HLD_URL)
    assert first == second
    assert [generated.path for generated in first.files] == sorted(generated.path for generated in first.files)
    assert b"values:\n    a:\n      c:\n      - 3\n      - e: 5\n        f: 4\n      d: 2\n    b: 1\n" in \
        files_of(first)["prod/a.yaml"]


def test_two_components_writing_the_same_file_is_an_error(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "root", "type": "static", "path": "m"}),
        "m/a.yaml": "kind: A\n",
    })
    with pytest.raises(GenerationError, match=r"output prod/root\.yaml is also written by component root"):
        generate(tmp_path, ["prod"])


def test_a_component_including_itself_is_an_error(tmp_path):
    write(tmp_path, {
        "component.yaml": component("root", {"name": "again", "path": "."}),
    })
    with pytest.raises(GenerationError, match="loops back"):
        generate(tmp_path, ["prod"])


@pytest.mark.parametrize("definition, message", [
    ({"name": "x", "type": "kustomize"}, "unknown type 'kustomize'"),
    ({"name": "x", "type": "static", "method": "http", "source": "https://example.com/a.yaml"},
     "method http is not supported"),
    ({"name": "x", "type": "component", "method": "helm", "source": "https://charts", "path": "c"},
     "method helm needs type helm"),
    ({"name": "x", "method": "git"}, "method git needs a `source`"),
    ({"name": "a/b"}, "cannot be used as a file name"),
    ({"name": ".."}, "cannot be used as a file name"),
    ({"type": "static"}, "`name` is required"),
])
def test_invalid_subcomponent_definitions_are_refused(tmp_path, definition, message):
    write(tmp_path, {"component.yaml": component("root", definition)})
    with pytest.raises(GenerationError, match=message):
        generate(tmp_path, ["prod"])


def test_config_values_are_typed_as_helm_reads_them_and_component_fields_stay_text(tmp_path):
    write(tmp_path, {
        "component.yaml": "name: root\nsubcomponents:\n- name: app\n  type: helm\n  method: helm\n"
                          "  source: https://charts.example.com\n  path: app\n  version: 1.10\n",
        "config/common.yaml": "subcomponents:\n  app:\n    config:\n      enabled: yes\n      mode: 0644\n"
                              "      time: 12:30\n      date: 2020-01-01\n      tag: \"1.10\"\n",
    })
    files = files_of(generate(tmp_path, ["prod"], helm_mode="helmrelease"))
    release = documents(files["prod/app.yaml"])[1]
    assert release["spec"]["chart"]["spec"]["version"] == "1.10"
    assert release["spec"]["values"] == {"enabled": True, "mode": 420, "time": "12:30", "date": "2020-01-01",
                                         "tag": "1.10"}


@pytest.mark.parametrize("environment", ["../up", "", "a/b", ".hidden"])
def test_environment_names_cannot_steer_paths(tmp_path, environment):
    write(tmp_path, {"component.yaml": component("root")})
    with pytest.raises(GenerationError, match="environment"):
        generate(tmp_path, [environment])
