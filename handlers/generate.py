"""Queue worker: hld-changed -> regenerate the manifest repo from the HLD branch head."""
from __future__ import annotations

import azure.functions as func

from core.runners import run_generate
from core.services import get_services
from core.storage import HLD_CHANGED
from core.workitems import decode


def run(msg: func.QueueMessage) -> None:
    run_generate(get_services(), decode(msg.get_body(), HLD_CHANGED))
