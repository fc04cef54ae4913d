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

from dataclasses import dataclass, field  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from devkit.azurite import clear_account, running_azurite  # noqa: E402
from tests.fakes.deliveries import FakeDeliveryJournal  # noqa: E402
from tests.fakes.env import ACR_SECRET, AZDO_SECRET, HLD_URL, app_settings  # noqa: E402,F401 (tests import them from here)
from tests.fakes.queues import AsyncFakeQueues, FakeQueues  # noqa: E402
from tests.fakes.records import FakeRecords  # noqa: E402

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


@pytest.fixture
def app_env(azurite, monkeypatch):
    """App settings for the function app on a fresh Azurite, direct mode, Azure DevOps URLs for routing only."""
    from core.wiring import reset_services

    app_settings(monkeypatch, azurite)
    reset_services()
    yield azurite
    reset_services()


@dataclass
class Door:
    """The fake stores behind the app (queues, delivery journal, record stores) and the Services wired on them."""
    queues: FakeQueues = field(default_factory=FakeQueues)
    journal: FakeDeliveryJournal = field(default_factory=FakeDeliveryJournal)
    records: FakeRecords = field(default_factory=FakeRecords)

    def rewire(self):
        """Wire `get_services()` anew from the environment, on these same fakes (where a test on Azurite would
        call reset_services() after changing a setting)."""
        from core.settings import get_settings
        from core.wiring import Services, install_services, reset_services

        reset_services()
        settings = get_settings()
        self.journal.reenqueue_after = settings.outbox_reenqueue_after
        services = Services(settings, stores={
            "queues": self.queues, "async_queues": AsyncFakeQueues(self.queues),
            "deliveries": self.journal, "async_deliveries": self.journal, **self.records.stores()})
        install_services(services)
        return services

    def enqueued(self) -> int:
        """Messages on every work queue (and anywhere else)."""
        return self.queues.total()


@pytest.fixture
def door(monkeypatch):
    """App settings as `app_env`, but no Azure Storage behind them: `get_services()` answers Services whose work
    queues, delivery journal and record stores are dict fakes (tests/fakes/). The connection string names a closed port, so a
    store that is not faked fails at once instead of reaching some Azurite."""
    from core.adapters.storage import dev_connection_string
    from core.wiring import reset_services
    from devkit.azurite import free_port

    dead = free_port()
    app_settings(monkeypatch, dev_connection_string(blob_port=dead, queue_port=dead, table_port=dead))
    fakes = Door()
    fakes.rewire()
    yield fakes
    reset_services()
