"""The promotion timer runs gate evaluation on its own thread: not the event loop, not the HTTP offload pool."""
from __future__ import annotations

import asyncio
import threading

from azure.functions.timer import TimerRequest

from handlers import promotion


def test_gate_evaluation_runs_on_the_timer_s_own_thread(monkeypatch):
    ran_on: list[str] = []

    def evaluate() -> int:
        ran_on.append(threading.current_thread().name)
        return 1

    monkeypatch.setattr(promotion, "_evaluate", evaluate)
    timer = TimerRequest(past_due=False)
    asyncio.run(promotion.tick(timer))
    asyncio.run(promotion.tick(timer))

    assert len(ran_on) == 2 and all(name.startswith("autopilot-promotion") for name in ran_on)
