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

from tests.azurite import clear_account, running_azurite  # noqa: E402


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
    from core.storage import Storage

    store = Storage(azurite)
    store.ensure()
    return store
