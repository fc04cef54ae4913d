"""Queue worker: image-pushed -> image bump in the HLD (or manifest) repo."""
from __future__ import annotations

import azure.functions as func

from core.runners import run_bump
from core.services import get_services
from core.storage import IMAGE_PUSHED
from core.workitems import decode


def run(msg: func.QueueMessage) -> None:
    run_bump(get_services(), decode(msg.get_body(), IMAGE_PUSHED))
