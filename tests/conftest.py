"""Shared test setup.

The azure-devops SDK reads AZURE_DEVOPS_CACHE_DIR when it is imported, so it is set here first:
tests must never see a location cache left by another run.
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("AZURE_DEVOPS_CACHE_DIR", tempfile.mkdtemp(prefix="ado-cache-"))
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from devkit.azurite import clear_account, running_azurite  # noqa: E402

# Properties are judged on what they find, not on how fast a loaded 2-core CI machine runs an example.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")


@pytest.fixture(scope="session")
def azurite_session():
    """One private Azurite per test process (pytest-xdist workers each get their own)."""
    with running_azurite() as conn:
        yield conn


@pytest.fixture
def azurite(azurite_session):
    """A connection string to an empty storage account."""
    clear_account(azurite_session)
    yield azurite_session


@pytest.fixture
def storage(azurite):
    from core.adapters.storage import Storage

    store = Storage(azurite)
    store.ensure()
    return store


ACR_SECRET = "acr-secret-123"
AZDO_SECRET = "azdo-secret-456"
HLD_URL = "https://dev.azure.com/fabrikam/Fabrikam/_git/hld"


@pytest.fixture
def app_env(azurite, monkeypatch):
    """App settings for the function app on a fresh Azurite, direct mode, Azure DevOps URLs for routing only."""
    from core.wiring import reset_services

    monkeypatch.setenv("AzureWebJobsStorage", azurite)
    monkeypatch.setenv("ACR_WEBHOOK_SECRET", ACR_SECRET)
    monkeypatch.setenv("AZDO_WEBHOOK_SECRET", AZDO_SECRET)
    monkeypatch.setenv("HLD_REPO_URL", HLD_URL)
    monkeypatch.setenv("HLD_BRANCH", "main")
    monkeypatch.setenv("MANIFEST_REPO_URL", "https://dev.azure.com/fabrikam/Fabrikam/_git/manifests")
    monkeypatch.delenv("AZDO_ORG_URL", raising=False)
    monkeypatch.setenv("WRITE_MODE", "direct")
    reset_services()
    yield azurite
    reset_services()
