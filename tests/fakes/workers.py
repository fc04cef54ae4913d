"""What a queue job (core.workers.runners.Job) needs of Services, on the fakes: the queues it takes waiting messages
from and sends poison copies and follow-ups to, the journal it marks work done in, the trace a poisoning is recorded
on; plus whatever services the job calls (`bump=`, `generation=`, `settings=`, ...)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.fakes.deliveries import FakeDeliveryJournal
from tests.fakes.queues import FakeQueues
from tests.fakes.records import FakeRecords


def worker_services(records: FakeRecords | None = None, queues: FakeQueues | None = None,
                    journal: FakeDeliveryJournal | None = None, **more: Any) -> SimpleNamespace:
    records = records or FakeRecords()
    return SimpleNamespace(queues=queues if queues is not None else FakeQueues(),
                           deliveries=journal if journal is not None else FakeDeliveryJournal(),
                           trace=records.trace, **more)
