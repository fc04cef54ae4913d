"""The one settings loader: defaults, validation with the setting named, identity-based storage."""
from __future__ import annotations

import pytest

from core.wiring import Services
from core.settings import SettingsError, load_settings


def test_defaults_and_direct_mode_without_azure_devops():
    s = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert (s.hld_branch, s.manifest_branch, s.write_mode, s.helm_mode, s.auto_approve) == (
        "main", "main", "direct", "helmrelease", True)


def test_pull_request_mode_is_the_default_with_azure_devops():
    s = load_settings({"AzureWebJobsStorage": "x", "AZDO_ORG_URL": "https://dev.azure.com/fabrikam/",
                       "AZDO_PROJECT": "Fabrikam"})
    assert s.write_mode == "pull-request" and s.azdo_org_url == "https://dev.azure.com/fabrikam"


@pytest.mark.parametrize("env,name", [
    ({}, "AzureWebJobsStorage"),
    ({"AzureWebJobsStorage": "x", "WRITE_MODE": "sometimes"}, "WRITE_MODE"),
    ({"AzureWebJobsStorage": "x", "WRITE_MODE": "pull-request"}, "AZDO_ORG_URL"),
    ({"AzureWebJobsStorage": "x", "AZDO_ORG_URL": "https://dev.azure.com/f"}, "AZDO_PROJECT"),
    ({"AzureWebJobsStorage": "x", "HELM_MODE": "helm2"}, "HELM_MODE"),
    ({"AzureWebJobsStorage": "x", "AUTO_APPROVE": "maybe"}, "AUTO_APPROVE"),
    ({"AzureWebJobsStorage": "x", "HLD_REPO_URL": "not a url"}, "HLD_REPO_URL"),
    ({"AzureWebJobsStorage": "x", "HLD_REPO_URL": "https://user:pat@dev.azure.com/f/p/_git/hld"}, "HLD_REPO_URL"),
    ({"AzureWebJobsStorage": "x", "HLD_BRANCH": "refs/heads/main"}, "HLD_BRANCH"),
])
def test_a_bad_value_is_refused_naming_the_setting(env, name):
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


def test_identity_based_storage_uses_account_endpoints_and_no_key():
    s = load_settings({"AzureWebJobsStorage__accountName": "autopilotsa",
                       "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001"})
    assert s.storage_connection == ""
    assert (s.storage_queue_url, s.storage_table_url) == ("https://autopilotsa.queue.core.windows.net",
                                                          "https://autopilotsa.table.core.windows.net")
    queues, tables = Services(s).storage.service_clients
    assert queues.url.startswith("https://autopilotsa.queue.core.windows.net")
    assert tables.url.startswith("https://autopilotsa.table.core.windows.net")
    assert type(queues.credential).__name__ == "ManagedIdentityCredential"


def test_only_the_settings_loader_reads_the_environment():
    """Everything else in core/ and handlers/ gets its values as arguments (wired in core.wiring); child processes
    get `child_environment()`."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    reads = re.compile(r"os\.environ|getenv|environ\[|from os import environ")
    offenders = [str(path.relative_to(root)) for folder in ("core", "handlers") for path in (root / folder).rglob("*.py")
                 if path != root / "core/settings.py" and reads.search(path.read_text())]
    assert offenders == []


def test_one_helm_modes():
    from core import settings
    from core.generate import HELM_MODES
    from core.rules import helm_modes, policy

    assert settings.HELM_MODES is policy.HELM_MODES is HELM_MODES is helm_modes.HELM_MODES


def test_a_single_setting_reads_as_the_loader_does():
    from core.settings import setting

    assert setting("HELM_BIN", env={"HELM_BIN": "  /opt/helm  "}) == "/opt/helm"
    assert setting("HELM_BIN", "helm", env={"HELM_BIN": ""}) == "helm"
