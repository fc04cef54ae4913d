"""Helm components: `helm template` through a fake helm binary, and Flux HelmRelease generation."""
from __future__ import annotations

import os

import pytest

from core.generate import GenerationError, generate
from tests.test_generate_helpers import FakeHelm, bedrock_hld, component, documents, files_of, write
from ruamel.yaml import YAML

MANIFESTS = """\
---
# Source: frontend/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: web
---
# Source: frontend/templates/empty.yaml
---
just a warning line
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: explicit
"""


@pytest.fixture
def helm(tmp_path):
    fake = FakeHelm(tmp_path / "bin")
    fake.behave(MANIFESTS)
    return fake


def local_chart_hld(root, config=None):
    return write(root, {
        "component.yaml": component("root", {"name": "web", "type": "helm", "method": "local", "path": "charts/web"}),
        "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        "config/common.yaml": config if config is not None else {"subcomponents": {"web": {
            "namespace": "shop", "injectNamespace": True, "config": {"image": {"tag": "1.2.3"}, "replicas": 2}}}},
    })


def test_rendered_mode_passes_release_chart_namespace_and_merged_values(tmp_path, helm):
    root = local_chart_hld(tmp_path / "hld")
    files = files_of(generate(root, ["prod"], helm_bin=str(helm.path)))
    [call] = helm.calls
    arguments = call["argv"]
    assert arguments[0] == "template" and arguments[-3:] == ["--", "web", str((root / "charts/web").resolve())]
    assert "--namespace=shop" in arguments
    assert YAML(typ="safe").load(call["values"]) == {"image": {"tag": "1.2.3"}, "replicas": 2}
    content = files["prod/web.yaml"]
    assert [document["metadata"] for document in documents(content)] == [
        {"name": "web", "namespace": "shop"}, {"name": "web", "namespace": "explicit"}]
    assert content.endswith(b"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
                            b"  namespace: explicit\n")


def test_rendered_mode_keeps_helm_output_text_without_namespace_injection(tmp_path, helm):
    root = local_chart_hld(tmp_path / "hld", config={})
    content = files_of(generate(root, ["prod"], helm_bin=str(helm.path)))["prod/web.yaml"]
    assert content.startswith(b"---\n# Source: frontend/templates/service.yaml\napiVersion: v1\n")
    assert "--namespace=default" in helm.calls[0]["argv"]


def test_chart_repository_component_passes_repo_and_version(tmp_path, helm):
    root = write(tmp_path / "hld", {"component.yaml": component("root", {
        "name": "prometheus", "type": "helm", "method": "helm", "source": "https://charts.example.com",
        "path": "prometheus", "version": "11.0.0"})})
    generate(root, ["prod"], helm_bin=str(helm.path), allowed_sources=["charts.example.com"])
    arguments = helm.calls[0]["argv"]
    assert "--repo=https://charts.example.com" in arguments and "--version=11.0.0" in arguments
    assert arguments[-2:] == ["prometheus", "prometheus"]


@pytest.mark.parametrize("source", ["https://charts.evil.example", "http://charts.example.com",
                                    "https://user:pw@charts.example.com", "oci://registry.evil.example/charts",
                                    "file:///etc", "https://127.0.0.1:8080"])
def test_rendered_mode_fetches_only_chart_repositories_on_the_allow_list(tmp_path, helm, source):
    root = write(tmp_path / "hld", {"component.yaml": component("root", {
        "name": "prometheus", "type": "helm", "method": "helm", "source": source, "path": "prometheus"})})
    with pytest.raises(GenerationError, match="chart repository .* is not allowed: rendered mode fetches it") as refused:
        generate(root, ["prod"], helm_bin=str(helm.path), allowed_sources=["charts.example.com"])
    assert helm.calls == []          # refused before helm ran: nothing was fetched
    assert "pw" not in str(refused.value)


def test_an_oci_chart_repository_on_the_allow_list_is_fetched(tmp_path, helm):
    root = write(tmp_path / "hld", {"component.yaml": component("root", {
        "name": "prometheus", "type": "helm", "method": "helm", "source": "oci://registry.example.com/charts",
        "path": "prometheus"})})
    generate(root, ["prod"], helm_bin=str(helm.path), allowed_sources=["registry.example.com"])
    assert "--repo=oci://registry.example.com/charts" in helm.calls[0]["argv"]


def test_helm_runs_once_per_distinct_values(tmp_path, helm):
    root = local_chart_hld(tmp_path / "hld")
    write(root, {"config/dev.yaml": {"subcomponents": {"web": {"config": {"replicas": 1}}}}})
    generation = generate(root, ["prod", "staging", "dev"], helm_bin=str(helm.path))
    assert len(helm.calls) == 2
    assert sorted(YAML(typ="safe").load(call["values"])["replicas"] for call in helm.calls) == [1, 2]
    files = files_of(generation)
    assert files["prod/web.yaml"] == files["staging/web.yaml"]


def test_helm_binary_comes_from_the_argument_only_and_the_cli_defaults_it_to_helm_bin(tmp_path, helm, monkeypatch):
    from core.generate.__main__ import main

    monkeypatch.setenv("HELM_BIN", str(helm.path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    root = local_chart_hld(tmp_path / "hld")
    with pytest.raises(GenerationError, match="helm binary 'helm' not found"):  # the library reads no environment
        generate(root, ["prod"])
    assert helm.calls == []
    assert main(["--hld", str(root), "--check", "--helm-mode", "rendered"]) == 0  # the CLI's default is the setting
    assert len(helm.calls) == 1


def test_missing_helm_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HELM_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GenerationError, match=r"component web \(prod\): helm binary 'helm' not found"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"])
    with pytest.raises(GenerationError, match="helm binary '/no/such/helm' not found"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"], helm_bin="/no/such/helm")


def test_helm_failure_reports_the_last_error_line(tmp_path, helm):
    helm.behave("", exit=1, stderr="some noise\nError: template: web/templates/x.yaml:3: bad\n")
    with pytest.raises(GenerationError, match=r"helm template failed with exit status 1: Error: template: "
                                              r"web/templates/x\.yaml:3: bad$"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"], helm_bin=str(helm.path))


def test_empty_helm_output_is_an_error(tmp_path, helm):
    helm.behave("---\n# Source: web/templates/nothing.yaml\n---\nthis chart is deprecated\n---\n- a list\n")
    with pytest.raises(GenerationError, match="helm template rendered no documents"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"], helm_bin=str(helm.path))


def test_helm_output_over_the_size_limit_is_an_error(tmp_path, helm):
    helm.behave("kind: A\ndata: " + "x" * 200_000 + "\n")
    with pytest.raises(GenerationError, match="output exceeds the size limit"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"], helm_bin=str(helm.path), max_output_bytes=100_000)


def test_directory_without_chart_yaml_is_refused_before_running_helm(tmp_path, helm):
    root = local_chart_hld(tmp_path / "hld")
    (root / "charts/web/Chart.yaml").unlink()
    with pytest.raises(GenerationError, match=r"no Chart\.yaml in charts/web/"):
        generate(root, ["prod"], helm_bin=str(helm.path))
    assert helm.calls == []


def test_chart_with_a_symlink_leaving_the_checkout_is_refused(tmp_path, helm):
    root = local_chart_hld(tmp_path / "hld")
    (tmp_path / "secret.txt").write_text("token")
    os.symlink(tmp_path / "secret.txt", root / "charts/web/leak.txt")
    with pytest.raises(GenerationError, match="chart file 'leak.txt' links outside the checkout"):
        generate(root, ["prod"], helm_bin=str(helm.path))
    assert helm.calls == []


# -- helmrelease mode ------------------------------------------------------------------------------------------

def test_bedrock_hld_becomes_helm_releases_with_the_ring_image_tag(tmp_path):
    root = bedrock_hld(tmp_path / "hld", image_tag="dev-20240101.7")
    generation = generate(root, ["prod"], helm_mode="helmrelease", allowed_sources=("dev.azure.com",))
    files = files_of(generation)
    assert sorted(files) == [
        "prod/default-component.yaml",
        "prod/fabrikam-project/fabrikam-project.yaml",
        "prod/fabrikam-project/fabrikam/dev/chart.yaml",
        "prod/fabrikam-project/fabrikam/dev/dev.yaml",
        "prod/fabrikam-project/fabrikam/dev/static.yaml",
        "prod/fabrikam-project/fabrikam/fabrikam.yaml",
    ]
    source, release = documents(files["prod/fabrikam-project/fabrikam/dev/chart.yaml"])
    name = "fabrikam-project-fabrikam-dev-chart"
    assert source == {
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"interval": "5m", "url": "https://dev.azure.com/fabrikam/frontend/_git/charts",
                 "ref": {"branch": "master"}}}
    assert release == {
        "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"interval": "5m", "releaseName": "chart",  # `helm template chart`, as Fabrikate ran it
                 "chart": {"spec": {"chart": "./frontend",
                                    "sourceRef": {"kind": "GitRepository", "name": name, "namespace": "default"}}},
                 "values": {"image": {"repository": "myacr.azurecr.io/app-repo-fabrikam", "tag": "dev-20240101.7"},
                            "serviceName": "fabrikam-k8s-svc-dev"}}}
    assert documents(files["prod/fabrikam-project/fabrikam/dev/static.yaml"])[0]["kind"] == "IngressRoute"
    assert b"s3cret" not in b"".join(files.values())


def test_helm_repository_chart_with_namespace_and_version(tmp_path):
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", {
            "name": "prometheus", "type": "helm", "method": "helm", "source": "oci://registry.example.com/charts",
            "path": "prometheus", "version": "11.0.0"}),
        "config/common.yaml": {"subcomponents": {"prometheus": {"namespace": "monitoring"}}},
    })
    source, release = documents(files_of(generate(root, ["prod"], helm_mode="helmrelease"))["prod/prometheus.yaml"])
    assert source["kind"] == "HelmRepository" and source["metadata"] == {"name": "prometheus",
                                                                         "namespace": "monitoring"}
    assert source["spec"] == {"interval": "5m", "url": "oci://registry.example.com/charts", "type": "oci"}
    assert release["spec"]["chart"]["spec"] == {
        "chart": "prometheus", "version": "11.0.0",
        "sourceRef": {"kind": "HelmRepository", "name": "prometheus", "namespace": "monitoring"}}
    assert release["spec"]["targetNamespace"] == "monitoring" and "values" not in release["spec"]


@pytest.mark.parametrize("version, branch, reference", [
    ("0123456789abcdef0123456789abcdef01234567", "", {"commit": "0123456789abcdef0123456789abcdef01234567"}),
    ("v2.0.1", "", {"tag": "v2.0.1"}),
    ("v2.0.1", "release", {"branch": "release", "tag": "v2.0.1"}),
    ("", "", None),
])
def test_git_chart_reference(tmp_path, version, branch, reference):
    chart = {"name": "c", "type": "helm", "method": "git", "source": "https://example.com/charts.git", "path": "x"}
    chart.update({key: value for key, value in (("version", version), ("branch", branch)) if value})
    root = write(tmp_path / "hld", {"component.yaml": component("root", chart)})
    source = documents(files_of(generate(root, ["prod"], helm_mode="helmrelease",
                                         hld_repo_url="https://example.com/hld.git"))["prod/c.yaml"])[0]
    assert source["spec"].get("ref") == reference


def test_local_chart_points_at_the_hld_repository(tmp_path):
    root = local_chart_hld(tmp_path / "hld")
    files = files_of(generate(root, ["prod"], helm_mode="helmrelease",
                              hld_repo_url="https://bot:pat@dev.azure.com/org/p/_git/hld"))
    source, release = documents(files["prod/web.yaml"])
    assert source["spec"] == {"interval": "5m", "url": "https://dev.azure.com/org/p/_git/hld"}
    assert release["spec"]["chart"]["spec"]["chart"] == "./charts/web"
    assert release["spec"]["values"] == {"image": {"tag": "1.2.3"}, "replicas": 2}
    assert release["metadata"]["namespace"] == "shop"


def test_local_chart_without_the_hld_url_is_an_error(tmp_path):
    with pytest.raises(GenerationError, match="hld_repo_url"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"], helm_mode="helmrelease")


def test_release_names_are_dns_labels_and_must_not_collide(tmp_path):
    long = "a-really-long-component-name-that-goes-on-and-on-and-on-forever"
    root = write(tmp_path / "hld", {"component.yaml": component("root", {
        "name": long, "type": "helm", "method": "helm", "source": "https://c", "path": "x"})})
    release = documents(files_of(generate(root, ["prod"], helm_mode="helmrelease"))[f"prod/{long}.yaml"])[1]
    name = release["metadata"]["name"]
    assert len(name) <= 53 and name.startswith("a-really-long-component-name") and name[-9] == "-"

    twins = [{"name": name, "type": "helm", "method": "helm", "source": "https://c", "path": "x"}
             for name in ("My_App", "my-app")]
    write(tmp_path / "twins", {"component.yaml": component("root", *twins)})
    with pytest.raises(GenerationError, match="HelmRelease default/my-app is also written by"):
        generate(tmp_path / "twins", ["prod"], helm_mode="helmrelease")


def test_helm_release_keeps_fabrikates_name_unless_taken_in_its_namespace(tmp_path):
    chart = {"type": "helm", "method": "helm", "source": "https://c", "path": "x"}
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", {"name": "dev", "method": "local", "path": "./dev"},
                                    {"name": "prod", "method": "local", "path": "./prod"},
                                    {"name": "qa", "method": "local", "path": "./qa"},
                                    {"name": "Web_UI", **chart}),
        "dev/component.yaml": component("dev", {"name": "chart", **chart}),
        "prod/component.yaml": component("prod", {"name": "chart", **chart}),
        "qa/component.yaml": component("qa", {"name": "chart", **chart}),
        "qa/config/common.yaml": {"subcomponents": {"chart": {"namespace": "qa"}}},
    })
    files = files_of(generate(root, ["prod"], helm_mode="helmrelease"))
    names = {path: (documents(files[path])[1]["metadata"]["name"], documents(files[path])[1]["spec"]["releaseName"])
             for path in ("prod/dev/chart.yaml", "prod/prod/chart.yaml", "prod/qa/chart.yaml", "prod/Web_UI.yaml")}
    assert names == {
        "prod/dev/chart.yaml": ("dev-chart", "chart"),             # what `helm template chart` named things
        "prod/prod/chart.yaml": ("prod-chart", "prod-chart"),      # `chart` is taken in namespace default
        "prod/qa/chart.yaml": ("qa-chart", "chart"),               # another namespace, another Helm release
        "prod/Web_UI.yaml": ("web-ui", "web-ui"),                  # Helm would refuse `Web_UI`
    }


def test_unknown_helm_mode_is_refused(tmp_path):
    with pytest.raises(GenerationError, match="unknown helm mode 'kustomize'"):
        generate(local_chart_hld(tmp_path / "hld"), ["prod"], helm_mode="kustomize")


def test_rendered_mode_names_missing_helm_before_fetching_a_git_chart(tmp_path):
    from core.generate.helm import HelmMissing

    chart = {"name": "web", "type": "helm", "method": "git", "source": f"file://{tmp_path}/no-such-repo.git",
             "path": "charts/web"}
    root = write(tmp_path / "hld", {"component.yaml": component("root", chart)})
    with pytest.raises(HelmMissing, match="helm binary '/no/such/helm' not found"):
        generate(root, ["prod"], helm_bin="/no/such/helm", allowed_sources=("file://",), cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # nothing was cloned


def test_rendered_mode_uses_a_chart_fab_install_vendored_under_helm_repos(tmp_path, helm):
    chart = {"name": "web", "type": "helm", "method": "git", "source": "https://example.com/charts.git",
             "path": "charts/web"}
    root = write(tmp_path / "hld", {
        "component.yaml": component("root", chart),
        "helm_repos/web/charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    })
    # no source is allowed, so only the committed copy can be used: Fabrikate's generate reads it offline too
    generation = generate(root, ["prod"], helm_bin=str(helm.path), allowed_sources=())
    assert [generated.path for generated in generation.files] == ["prod/root.yaml", "prod/web.yaml"]
    [call] = helm.calls
    assert call["argv"][-2:] == ["web", str((root / "helm_repos/web/charts/web").resolve())]
