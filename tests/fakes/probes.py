"""Health probes that answer without storage, for the health checks that are not about storage (tools, repos,
settings, Azure DevOps): every queue empty and every table there, nothing stuck in the outbox."""
from __future__ import annotations

from typing import Any

from core.adapters.storage import WORK_QUEUES
from core.ops.health import HealthProbes, StoreStatus


class HealthyStores:
    def check(self, storage: Any) -> StoreStatus:
        return StoreStatus({name: {"depth": 0, "poison": 0} for name in WORK_QUEUES}, ())


class EmptyOutbox:
    def stuck(self, journal: Any, limit: int) -> list[str]:
        return []


def storage_free_probes(**more: Any) -> HealthProbes:
    return HealthProbes(stores=HealthyStores(), outbox=EmptyOutbox(), **more)
