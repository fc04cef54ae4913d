"""Health probes that answer without storage, for the health checks that are not about storage (tools, repos,
settings, Azure DevOps): every queue empty and every table there, nothing stuck in the outbox. And a storage account
on the fake queues, for the real store probe (core.ops.health.StoreProbe) to check."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableErrorCode

from core.adapters.storage import WORK_QUEUES
from core.ops.health import HealthProbes, StoreProbe, StoreStatus
from tests.fakes.queues import FakeQueues


class HealthyStores:
    def check(self, storage: Any) -> StoreStatus:
        return StoreStatus({name: {"depth": 0, "poison": 0} for name in WORK_QUEUES}, ())


class EmptyOutbox:
    def stuck(self, journal: Any, limit: int) -> list[str]:
        return []


def storage_free_probes(**more: Any) -> HealthProbes:
    return HealthProbes(**{"stores": HealthyStores(), "outbox": EmptyOutbox(), **more})


class _Table:
    def get_entity(self, partition_key: str, row_key: str) -> dict:
        missing = ResourceNotFoundError("The specified resource does not exist.")   # the table is there, the row not
        missing.error_code = TableErrorCode.RESOURCE_NOT_FOUND     # as the Tables SDK sets it
        raise missing


@dataclass(eq=False)
class FakeAccount:
    """What StoreProbe asks of a storage account: queue depths (the fake queues) and tables that are all there."""
    queues: FakeQueues

    def queue_depth(self, name: str) -> int:
        return self.queues.queue_depth(name)

    def table(self, name: str) -> _Table:
        return _Table()


@dataclass
class StoresOf:
    """The real store probe on a fake account, whatever storage the services hold."""
    account: FakeAccount
    probe: StoreProbe

    def check(self, storage: Any) -> StoreStatus:
        return self.probe.check(self.account)
