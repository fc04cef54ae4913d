"""Run one `pr-review` work item: wire the reviewer from the process's services and honour Retry-After.

Raising means "retry me": Azure DevOps 401/429/5xx and git failures propagate to the queue, never to a vote.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from core.review import ReviewOutcome, ReviewService
from core.review_records import ReviewRecords
from core.runners import honour_retry_after, work_taken
from core.settings import SettingsError
from core.telemetry import metrics, trace_context
from core.workitems import PrReview, WorkItem

log = logging.getLogger("autopilot.review")

WORKSPACE_PURPOSE = "review"


def run_review(services, item: WorkItem, sleep: Callable[[float], None] = time.sleep) -> ReviewOutcome | None:
    assert isinstance(item, PrReview)
    if services.gateway is None:
        raise SettingsError("AZDO_ORG_URL is not set: pull requests cannot be reviewed")
    reviewer = ReviewService(
        gateway=services.gateway, settings=services.settings, records=ReviewRecords(services.storage),
        trace=services.trace, workspace=lambda url, branch: services.workspace(url, branch, WORKSPACE_PURPOSE),
        cache_dir=services.work_base / "review-components")
    with trace_context(item.trace_id):
        try:
            outcome = honour_retry_after(lambda: reviewer.review(item), sleep)
        except BaseException:
            metrics.failure("review")
            raise
        finally:
            work_taken(services, [item])
    if outcome is not None:
        metrics.approval(outcome.action)
        log.info("PR %s iteration %s: %s", outcome.pr_id, outcome.iteration, outcome.action,
                 extra={"trace_id": item.trace_id})
    return outcome
