"""The function app's test settings, and a storage connection for tests that exercise a handler's checks without
storage: it points at a closed local port, so a test that does reach storage fails at once instead of passing."""
from __future__ import annotations

import pytest

from core.adapters.storage import dev_connection_string

NO_STORAGE = dev_connection_string(blob_port=9, queue_port=9, table_port=9)   # discard port: nothing listens
ACR_SECRET = "acr-secret-123"
AZDO_SECRET = "azdo-secret-456"
HLD_URL = "https://dev.azure.com/fabrikam/Fabrikam/_git/hld"


def app_settings(monkeypatch, connection: str) -> None:
    """The app settings `app_env`, `door` and `no_storage_env` share: direct mode, Azure DevOps URLs for routing."""
    monkeypatch.setenv("AzureWebJobsStorage", connection)
    monkeypatch.setenv("ACR_WEBHOOK_SECRET", ACR_SECRET)
    monkeypatch.setenv("AZDO_WEBHOOK_SECRET", AZDO_SECRET)
    monkeypatch.setenv("HLD_REPO_URL", HLD_URL)
    monkeypatch.setenv("HLD_BRANCH", "main")
    monkeypatch.setenv("MANIFEST_REPO_URL", "https://dev.azure.com/fabrikam/Fabrikam/_git/manifests")
    monkeypatch.delenv("AZDO_ORG_URL", raising=False)
    monkeypatch.setenv("WRITE_MODE", "direct")


@pytest.fixture
def no_storage_env(monkeypatch):
    from core.wiring import reset_services

    app_settings(monkeypatch, NO_STORAGE)
    reset_services()
    yield NO_STORAGE
    reset_services()
