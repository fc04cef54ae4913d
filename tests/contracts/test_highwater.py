"""The high-water mark contract, against Table storage (Azurite) and the dict fake."""
from __future__ import annotations

import threading

import pytest

from core.adapters.highwater import HighWaterMark, HighWaterMarks
from tests.fakes.records import FakeHighWater


@pytest.fixture(params=["table", "fake"])
def marks(request):
    if request.param == "fake":
        return FakeHighWater()
    return HighWaterMarks(request.getfixturevalue("storage"))


def by_number(a: HighWaterMark, b: HighWaterMark) -> bool:
    return int(a.tag) > int(b.tag)


def test_raise_only_forward(marks):
    assert marks.get("repo", "k") is None
    assert marks.raise_to("repo", "k", HighWaterMark("5", "t5"), by_number)
    assert not marks.raise_to("repo", "k", HighWaterMark("4", "t4"), by_number)
    assert marks.get("repo", "k") == HighWaterMark("5", "t5")
    assert marks.raise_to("repo", "k", HighWaterMark("6", ""), by_number)
    assert marks.get("repo", "k") == HighWaterMark("6", "")
    assert marks.get("other-repo", "k") is None and marks.get("repo", "k2") is None


def test_concurrent_raises_keep_the_newest(marks):
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(
        marks.raise_to("repo", "k", HighWaterMark(str(n), ""), by_number))) for n in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert marks.get("repo", "k") == HighWaterMark("6", "") and any(results)
