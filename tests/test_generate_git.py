"""Git-sourced components, against real repositories reached through file:// URLs."""
from __future__ import annotations

import shutil

import pytest

from core.adapters.git_runner import GitUnavailable
from core.errors import Retryable
from core.generate import GenerationError, generate
from tests.test_generate_helpers import FakeHelm, GitRepository, component, documents, files_of, write


LOCAL = ("file://",)  # the bare repositories of these tests are reached through file:// URLs


def remote_component(repository: GitRepository, tag: str) -> dict:
    return {
        "component.yaml": component("remote-" + tag, {"name": "manifests", "type": "static", "path": "m"}),
        "m/cm.yaml": {"kind": "ConfigMap", "metadata": {"name": tag}},
    }


def hld(tmp_path, **fields):
    return write(tmp_path / "hld", {"component.yaml": component("root", {"name": "dep", "method": "git", **fields})})


def config_map_name(generation) -> str:
    return documents(files_of(generation)["prod/dep/manifests.yaml"])[0]["metadata"]["name"]


def test_branch_component_is_cloned_cached_and_follows_the_branch(tmp_path):
    repository = GitRepository(tmp_path)
    repository.commit(remote_component(repository, "first"))
    root = hld(tmp_path, source=repository.url, branch="main")
    cache = tmp_path / "cache"
    generation = generate(root, ["prod"], cache_dir=cache, allowed_sources=LOCAL)
    assert sorted(files_of(generation)) == ["prod/dep/manifests.yaml", "prod/dep/remote-first.yaml", "prod/root.yaml"]
    assert config_map_name(generation) == "first"
    assert len(list((cache / "git").iterdir())) == 1

    assert config_map_name(generate(root, ["prod"], cache_dir=cache, allowed_sources=LOCAL)) == "first"
    assert len(list((cache / "git").iterdir())) == 1

    repository.commit(remote_component(repository, "second"))
    assert config_map_name(generate(root, ["prod"], cache_dir=cache, allowed_sources=LOCAL)) == "second"


def test_pinned_commit_is_served_from_the_cache_without_the_remote(tmp_path):
    repository = GitRepository(tmp_path)
    pinned = repository.commit(remote_component(repository, "pinned"))
    repository.commit(remote_component(repository, "later"))
    root = hld(tmp_path, source=repository.url, version=pinned)
    cache = tmp_path / "cache"
    assert config_map_name(generate(root, ["prod"], cache_dir=cache, allowed_sources=LOCAL)) == "pinned"
    shutil.rmtree(repository.bare)
    assert config_map_name(generate(root, ["prod"], cache_dir=cache, allowed_sources=LOCAL)) == "pinned"


def test_tag_and_abbreviated_commit_versions(tmp_path):
    repository = GitRepository(tmp_path)
    tagged = repository.commit(remote_component(repository, "tagged"))
    repository.tag("v1.0.0")
    repository.commit(remote_component(repository, "later"))
    assert config_map_name(generate(hld(tmp_path / "a", source=repository.url, version="v1.0.0"), ["prod"], allowed_sources=LOCAL)) == "tagged"
    assert config_map_name(generate(hld(tmp_path / "b", source=repository.url, version=tagged[:8]), ["prod"], allowed_sources=LOCAL)) == \
        "tagged"


def test_component_in_a_subdirectory_of_the_repository_with_its_own_config(tmp_path):
    repository = GitRepository(tmp_path)
    repository.commit({
        "defs/app/component.yaml": component("app", {"name": "web", "type": "static", "path": "m"}),
        "defs/app/config/prod.yaml": {"subcomponents": {"web": {"namespace": "remote", "injectNamespace": True}}},
        "defs/app/m/a.yaml": {"kind": "A", "metadata": {"name": "a"}},
    })
    root = hld(tmp_path, source=repository.url, branch="main", path="defs/app")
    content = files_of(generate(root, ["prod"], allowed_sources=LOCAL))["prod/dep/web.yaml"]
    assert documents(content) == [{"kind": "A", "metadata": {"name": "a", "namespace": "remote"}}]


def test_unreachable_source_is_retryable_and_names_its_url_without_credentials(tmp_path):
    root = hld(tmp_path, source="https://user:tok3n@127.0.0.1:9/org/repo.git", branch="main")
    with pytest.raises(GitUnavailable) as raised:  # the source may answer later: the queue retries the work item
        generate(root, ["prod"], allowed_sources=("127.0.0.1:9",))
    assert isinstance(raised.value, Retryable)
    message = str(raised.value)
    assert "https://127.0.0.1:9/org/repo.git@main" in message and "tok3n" not in message
    assert message.startswith("component dep (prod): cannot fetch")
    assert "\n" not in message


def test_missing_branch_and_version_fail_with_the_url(tmp_path):
    repository = GitRepository(tmp_path)
    repository.commit(remote_component(repository, "x"))
    with pytest.raises(GenerationError, match="'nope' not found in file://"):
        generate(hld(tmp_path / "a", source=repository.url, branch="nope"), ["prod"], allowed_sources=LOCAL)
    with pytest.raises(GenerationError, match="version 'v9' not found"):
        generate(hld(tmp_path / "b", source=repository.url, version="v9"), ["prod"], allowed_sources=LOCAL)


@pytest.mark.parametrize("source", [
    "ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/pwned", "/etc", "../other-repo", "https:///x"])
def test_unsupported_git_sources_are_refused(tmp_path, source):
    with pytest.raises(GenerationError, match="git source"):
        generate(hld(tmp_path, source=source), ["prod"], allowed_sources=LOCAL)


def test_paths_inside_a_cloned_component_cannot_leave_its_checkout(tmp_path):
    repository = GitRepository(tmp_path)
    repository.commit({"component.yaml": component("c", {"name": "up", "path": "../.."})})
    with pytest.raises(GenerationError, match="'../..' leaves the checkout"):
        generate(hld(tmp_path, source=repository.url), ["prod"], allowed_sources=LOCAL)
    with pytest.raises(GenerationError, match="leaves the checkout"):
        generate(hld(tmp_path / "b", source=repository.url, path="../../.."), ["prod"], allowed_sources=LOCAL)


def test_helm_chart_from_git_is_rendered_from_the_clone(tmp_path):
    repository = GitRepository(tmp_path, "charts")
    repository.commit({"frontend/Chart.yaml": "apiVersion: v2\nname: frontend\nversion: 0.1.0\n"})
    helm = FakeHelm(tmp_path / "bin")
    helm.behave("kind: Service\nmetadata: {name: s}\n")
    root = write(tmp_path / "hld", {"component.yaml": component(
        "root", {"name": "chart", "type": "helm", "method": "git", "source": repository.url, "path": "frontend",
                 "branch": "main"})})
    files = files_of(generate(root, ["prod"], helm_bin=str(helm.path), cache_dir=tmp_path / "cache", allowed_sources=LOCAL))
    assert files["prod/chart.yaml"] == b"---\nkind: Service\nmetadata: {name: s}\n"
    chart_argument = helm.calls[0]["argv"][-1]
    assert chart_argument.startswith(str(tmp_path / "cache" / "git")) and chart_argument.endswith("/frontend")


def test_static_component_from_git(tmp_path):
    repository = GitRepository(tmp_path)
    repository.commit({"manifests/a.yaml": "kind: FromGit\n"})
    root = write(tmp_path / "hld", {"component.yaml": component(
        "root", {"name": "s", "type": "static", "method": "git", "source": repository.url, "path": "manifests"})})
    assert files_of(generate(root, ["prod"], allowed_sources=LOCAL))["prod/s.yaml"] == b"---\nkind: FromGit\n"


def test_local_chart_inside_a_git_component_is_released_from_that_repository(tmp_path):
    repository = GitRepository(tmp_path)
    repository.commit({
        "app/component.yaml": component("app", {"name": "chart", "type": "helm", "path": "helm/app"}),
        "app/helm/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    })
    repository.tag("v3")
    root = hld(tmp_path, source=repository.url, version="v3", path="app")
    source, release = documents(files_of(generate(root, ["prod"], helm_mode="helmrelease", allowed_sources=LOCAL))["prod/dep/chart.yaml"])
    assert source["spec"] == {"interval": "5m", "url": repository.url, "ref": {"tag": "v3"}}
    assert release["spec"]["chart"]["spec"]["chart"] == "./app/helm/app"
    assert release["metadata"]["name"] == "dep-chart"
