"""Git sources in component.yaml (issue #16, item 7).

A `method: git` component with a `file://` source copied any repository on the service host (including the
service's own cached working copies) into the manifests. Only sources on `ALLOWED_SOURCE_HOSTS` are fetched:
`https://` on a listed host, `ssh://` when `ssh://host` is listed, `file://` only when listed explicitly.
"""
from __future__ import annotations

import pytest

from core.adapters.git_runner import GitUnavailable
from core.errors import Permanent
from core.generate import GenerationError, generate
from core.generate.__main__ import main
from core.settings import SettingsError, load_settings
from core.rules.source_hosts import default_allowed_sources, parse_allowed_sources, source_allowed
from devkit import gitrepos
from tests.test_bump import EXAMPLE_HLD
from tests.test_generate_helpers import GitRepository, component, files_of, write
from tests.test_generation import changed, make_generation
from tests.fakes.records import records  # noqa: F401  (the fixture)

HLD_URL = "https://dev.azure.com/fabrikam/project/_git/hld"


def hld_with_source(root, source: str, **fields):
    return write(root, {"component.yaml": component("root", {"name": "dep", "method": "git", "source": source,
                                                             "branch": "main", **fields})})


def secret_repository(tmp_path) -> GitRepository:
    repository = GitRepository(tmp_path, "service-cache")
    repository.commit({"component.yaml": component("stolen", {"name": "m", "type": "static", "path": "m"}),
                       "m/secret.yaml": {"kind": "Secret", "data": {"token": "c2VjcmV0"}}})
    return repository


def test_file_source_is_refused_by_default_naming_the_component_and_url(tmp_path):
    repository = secret_repository(tmp_path)
    root = hld_with_source(tmp_path / "hld", repository.url)
    with pytest.raises(GenerationError) as raised:
        generate(root, ["prod"], hld_repo_url=HLD_URL, cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert isinstance(raised.value, Permanent)
    assert message.startswith(f"component dep (prod): git source '{repository.url}' is not allowed")
    assert "ALLOWED_SOURCE_HOSTS (dev.azure.com)" in message
    assert not (tmp_path / "cache" / "git").exists()  # nothing was fetched


def test_file_source_is_refused_without_any_hld_url_too(tmp_path):
    root = hld_with_source(tmp_path / "hld", secret_repository(tmp_path).url)
    with pytest.raises(GenerationError, match=r"is not allowed: .*\(none\)"):
        generate(root, ["prod"])


def test_file_source_is_fetched_only_when_file_is_listed(tmp_path):
    root = hld_with_source(tmp_path / "hld", secret_repository(tmp_path).url)
    files = files_of(generate(root, ["prod"], allowed_sources=parse_allowed_sources("dev.azure.com, file://")))
    assert "prod/dep/m.yaml" in files


@pytest.mark.parametrize("source", [
    "http://dev.azure.com/fabrikam/project/_git/charts",      # plain http, even on the HLD host
    "git://dev.azure.com/fabrikam/charts",
    "https://evil.example/charts.git",
    "https://dev.azure.com.evil.example/charts.git",
    "ssh://git@dev.azure.com/v3/fabrikam/project/charts",     # ssh not configured
    "git@dev.azure.com:v3/fabrikam/project/charts",
])
def test_sources_off_the_list_are_refused_in_both_helm_modes(tmp_path, source):
    for mode in ("rendered", "helmrelease"):
        root = write(tmp_path / mode, {"component.yaml": component(
            "root", {"name": "chart", "type": "helm", "method": "git", "source": source, "path": "c"})})
        with pytest.raises(GenerationError, match=r"component chart \(prod\): git source '.*' is not allowed"):
            generate(root, ["prod"], helm_mode=mode, hld_repo_url=HLD_URL)


def test_allowed_https_source_gets_through_to_the_fetch_and_credentials_never_show(tmp_path):
    root = hld_with_source(tmp_path / "hld", "https://bot:tok3n@127.0.0.1:9/org/repo.git")
    with pytest.raises(GitUnavailable) as raised:  # fetched (and unreachable): retried, not poisoned
        generate(root, ["prod"], allowed_sources=("127.0.0.1:9",))
    assert "cannot fetch https://127.0.0.1:9/org/repo.git@main" in str(raised.value)
    assert "tok3n" not in str(raised.value)
    with pytest.raises(GenerationError) as refused:
        generate(root, ["prod"], hld_repo_url=HLD_URL)
    assert "tok3n" not in str(refused.value) and "'https://127.0.0.1:9/org/repo.git' is not allowed" in str(
        refused.value)


def test_allow_list_matching():
    allowed = parse_allowed_sources("Dev.Azure.com, ssh://git@ssh.dev.azure.com, https://git.example:8443/")
    assert allowed == ("dev.azure.com", "ssh://ssh.dev.azure.com", "git.example:8443")
    assert source_allowed("https://DEV.azure.com/o/p/_git/r", allowed)
    assert source_allowed("https://user@dev.azure.com/o/p/_git/r", allowed)
    assert not source_allowed("https://dev.azure.com:444/o/p/_git/r", allowed)
    assert source_allowed("ssh://git@ssh.dev.azure.com/v3/o/p/r", allowed)
    assert source_allowed("git@ssh.dev.azure.com:v3/o/p/r", allowed)
    assert not source_allowed("https://ssh.dev.azure.com/o/p/_git/r", allowed)   # ssh entry is not https
    assert not source_allowed("ssh://dev.azure.com/o/r", allowed)                 # https entry is not ssh
    assert source_allowed("https://git.example:8443/r.git", allowed)
    assert not source_allowed("https://git.example/r.git", allowed)
    assert not source_allowed("file:///srv/repo.git", allowed)
    assert source_allowed("file:///srv/repo.git", allowed + ("file://",))
    assert default_allowed_sources(HLD_URL) == ("dev.azure.com",)
    assert default_allowed_sources("ssh://git@ssh.dev.azure.com/v3/o/p/hld") == ("ssh://ssh.dev.azure.com",)
    assert default_allowed_sources("file:///srv/hld.git") == ()


@pytest.mark.parametrize("entry", ["http://host", "git://host", "ho st", "host/path/x", "-x"])
def test_bad_allow_list_entries_are_settings_errors(entry):
    with pytest.raises(SettingsError, match="ALLOWED_SOURCE_HOSTS"):
        load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ALLOWED_SOURCE_HOSTS": entry})


def test_settings_default_to_the_hld_host():
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert load_settings({**base, "HLD_REPO_URL": HLD_URL}).allowed_source_hosts == ("dev.azure.com",)
    assert load_settings({**base, "HLD_REPO_URL": "file:///srv/hld.git"}).allowed_source_hosts == ()
    assert load_settings({**base, "HLD_REPO_URL": HLD_URL, "ALLOWED_SOURCE_HOSTS": "github.com,file://"}
                         ).allowed_source_hosts == ("github.com", "file://")


def test_cli_takes_the_allow_list_from_an_option(tmp_path, capsys):
    root = hld_with_source(tmp_path / "hld", secret_repository(tmp_path).url)
    assert main(["--hld", str(root), "--check"]) == 1
    assert "is not allowed" in capsys.readouterr().err
    assert main(["--hld", str(root), "--check", "--allowed-source-hosts", "file://"]) == 0


def test_generation_worker_refuses_a_source_pointing_at_its_own_working_copy(tmp_path, records):
    manifests = gitrepos.bare_repo(tmp_path, {"README.md": "manifests\n"}, name="manifests")
    service = make_generation((gitrepos.bare_repo(tmp_path, EXAMPLE_HLD, name="hld"), manifests), records, tmp_path)
    service.hld_url = HLD_URL  # as configured in Azure; the allow-list defaults to its host
    own_copy = service.manifests.workdir
    service.manifests.head()  # the cached working copy now exists on the service host
    text = gitrepos.file_at(service.hld.url, "main", "component.yaml").decode()
    gitrepos.push_files(service.hld.url, "main", {"component.yaml": text + (
        f"- name: stolen\n  method: git\n  source: {own_copy.as_uri()}\n")}, "Add a git source")
    head = gitrepos.branches(manifests)["main"]
    with pytest.raises(GenerationError, match=r"stolen \(prod\): git source 'file://.*' is not allowed"):
        service.process([changed()])
    assert gitrepos.branches(manifests)["main"] == head
