"""The `pr-review` queue job: review one pull request with the reviewer the process's services wire
(`core.wiring.Services.reviewer`).

Failures follow core.workers.runners: Azure DevOps 429/5xx and git trouble are retried (Retry-After honoured), refused
credentials and other permanent errors poison the message with their reason; never a vote on a failure.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from core.workers.job_stores import OnServices
from core.workers.reviewer import ReviewOutcome
from core.adapters.storage import PR_REVIEW
from core.telemetry import metrics
from core.workers.tenancy import services_for
from core.model.workitems import PrReview, WorkItem

log = logging.getLogger("autopilot.review")


@dataclass
class ReviewJob(OnServices):
    services: Any
    queue: str = PR_REVIEW
    stage: str = "review"
    batches: bool = False       # each message is its own pull request

    def process(self, items: Sequence[WorkItem]) -> ReviewOutcome | None:
        [item] = items
        assert isinstance(item, PrReview)
        services = services_for(self.services, item.tenant)   # the tenant's project, credentials and repos
        definition = getattr(services, "definition", None)
        if definition is not None and item.repository_url:
            definition.require_repo(item.repository_url)
        return services.reviewer.review(item)

    def follow_ups(self, result: ReviewOutcome | None) -> Sequence[WorkItem]:
        return ()

    def report(self, outcome: ReviewOutcome | None, items: Sequence[WorkItem]) -> None:
        if outcome is not None:
            metrics.approval(outcome.action)
            log.info("PR %s iteration %s: %s", outcome.pr_id, outcome.iteration, outcome.action,
                     extra={"trace_id": items[0].trace_id})
