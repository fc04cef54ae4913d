"""Queue worker: pr-review -> review a bot pull request (approve and auto-complete, or say why not)."""
from __future__ import annotations

import azure.functions as func

from core.review_runner import run_review
from core.services import get_services
from core.storage import PR_REVIEW
from core.workitems import decode


def run(msg: func.QueueMessage) -> None:
    run_review(get_services(), decode(msg.get_body(), PR_REVIEW))
