"""What every queue job (core.workers.runners.Job) reads of its services: the trace, the queues and the journal."""
from __future__ import annotations

from typing import Any

from core.adapters.deliveries import DeliveryJournal
from core.adapters.storage import WorkQueues
from core.adapters.trace import TraceStore

__all__ = ["OnServices"]


class OnServices:
    """A mixin for jobs holding `services`: the runner's stores are the services' own."""
    services: Any

    @property
    def trace(self) -> TraceStore:
        return self.services.trace

    @property
    def queues(self) -> WorkQueues:
        return self.services.queues

    @property
    def deliveries(self) -> DeliveryJournal:
        return self.services.deliveries
