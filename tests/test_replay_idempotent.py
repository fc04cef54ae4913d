"""Replaying already processed work through the replay path changes nothing, for every work queue (the replay path
is the poison queue and the queue runner, end to end, on the fake queues and record stores).

(pr-review: tests/test_review.py::test_a_pr_already_approved_with_our_auto_complete_costs_only_reads replays a
review of an approved PR and asserts it makes no write calls.)
"""
from __future__ import annotations

from core.ops.replay import Replayer
from core.adapters.storage import HLD_CHANGED, IMAGE_PUSHED, poison_queue
from core.model.workitems import decode, encode
from devkit.gitrepos import branches
from tests.fakes.queues import FakeQueues
from tests.fakes.records import records  # noqa: F401  (the fixture)
from tests.fakes.workers import worker_services
from tests.test_bump import make_service, push
from tests.test_bump import run_one as bump_one
from tests.test_generation import changed, make_generation, repos  # noqa: F401
from tests.test_generation import run_one as generate_one


def replay_once(queues: FakeQueues, queue: str, item) -> object:
    """Put the processed item into the poison queue, replay it with the admin replayer, and dequeue it."""
    queues.enqueue(poison_queue(queue), encode(item))
    moved = Replayer(queues, None, None).poison(queue)
    assert len(moved.moved) == 1
    [message] = queues.receive(queue, 1, 30)
    assert queues.delete(queue, message)
    return decode(message.text, queue)


def test_replayed_image_push_changes_nothing(repos, records, tmp_path):  # noqa: F811
    hld, _ = repos
    bump = make_service(hld, records, tmp_path)
    services = worker_services(records, bump=bump)
    item = push("fabrikam/frontend", "1.4.3")
    assert bump_one(services, item).result.commit is not None
    head = branches(hld)["main"]
    result = bump_one(services, replay_once(services.queues, IMAGE_PUSHED, item)).result
    assert result.commit is None and {o.action for o in result.outcomes} == {"noop"}
    assert branches(hld)["main"] == head


def test_replayed_hld_change_changes_nothing(repos, records, tmp_path):  # noqa: F811
    _, manifests = repos
    services = worker_services(records, generation=make_generation(repos, records, tmp_path))
    item = changed("push")
    assert generate_one(services, item).result.action == "committed"
    head = branches(manifests)["main"]
    assert generate_one(services, replay_once(services.queues, HLD_CHANGED, item)).result.action == "up-to-date"
    assert branches(manifests)["main"] == head
