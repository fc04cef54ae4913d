"""The review record contract, against Table storage (Azurite) and the dict fake."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.adapters.review_records import ReviewRecord, ReviewRecords, RuleFailure
from tests.fakes.records import FakeReviews

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["table", "fake"])
def reviews(request):
    if request.param == "fake":
        return FakeReviews()
    return ReviewRecords(request.getfixturevalue("storage"))


def one(pr: int, iteration: int, at: datetime, action: str = "approved") -> ReviewRecord:
    return ReviewRecord(pr=pr, repository="hld", iteration=iteration, passed=("patchOnly",),
                        failed=(RuleFailure("noNewImages", "adds nginx"),), action=action, at=at,
                        trace_ids=("a" * 32, "b" * 32))


def test_for_pr_by_iteration_then_time(reviews):
    reviews.write(one(7, 2, T0))
    reviews.write(one(7, 1, T0 + timedelta(minutes=5), "ineligible"))
    reviews.write(one(7, 1, T0))
    reviews.write(one(8, 1, T0))
    got = reviews.for_pr(7)
    assert [(r.iteration, r.at, r.action) for r in got] == [(1, T0, "approved"),
                                                            (1, T0 + timedelta(minutes=5), "ineligible"),
                                                            (2, T0, "approved")]
    assert got[0] == one(7, 1, T0) and reviews.for_pr(9) == []


def test_same_evaluation_written_twice_is_one_record(reviews):
    reviews.write(one(7, 1, T0))
    reviews.write(one(7, 1, T0, "ineligible"))
    assert [r.action for r in reviews.for_pr(7)] == ["ineligible"]
