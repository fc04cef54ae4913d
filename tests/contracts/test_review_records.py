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


def test_review_records_are_per_tenant(reviews):
    """PR numbers are per Azure DevOps organization: two tenants' PR 7 are two pull requests. `default`'s view is
    the store as it was before the fleet (its old keys)."""
    reviews.for_tenant("a").write(one(7, 1, T0, "approved"))
    reviews.for_tenant("b").write(one(7, 1, T0, "rejected"))
    assert [r.action for r in reviews.for_tenant("a").for_pr(7)] == ["approved"]
    assert [r.action for r in reviews.for_tenant("b").for_pr(7)] == ["rejected"]
    assert reviews.for_pr(7) == [] and reviews.for_tenant("default").for_pr(7) == []
    reviews.write(one(7, 2, T0, "ineligible"))
    assert [r.action for r in reviews.for_tenant("default").for_pr(7)] == ["ineligible"]
    assert [r.action for r in reviews.for_tenant("a").for_pr(7)] == ["approved"]


def test_default_tenant_keeps_the_keys_from_before_the_fleet(storage):
    """Rows written before review records were per tenant (PartitionKey = the PR id) still read."""
    from core.adapters.review_records import REVIEW_TABLE

    storage.table(REVIEW_TABLE).upsert_entity({
        "PartitionKey": "7", "RowKey": "000001-20261130T100000.000000Z", "pr": 7, "repository": "hld",
        "iteration": 1, "passed": "patchOnly", "failed": "[]", "action": "approved", "at": T0.isoformat(),
        "traceIds": ""})
    assert [r.action for r in ReviewRecords(storage).for_pr(7)] == ["approved"]
    assert ReviewRecords(storage, "a").for_pr(7) == []
