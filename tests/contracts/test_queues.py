"""The work-queue port's contract: the same assertions against Azure Storage (on Azurite) and the fake that the
service tests use (tests/fakes/queues.py)."""
from __future__ import annotations

import pytest

from tests.fakes.queues import FakeQueues

Q = "contract-queue"


@pytest.fixture(params=["azure", "fake"])
def queues(request):
    if request.param == "fake":
        return FakeQueues()
    from core.adapters.storage import Storage

    return Storage(request.getfixturevalue("azurite"))


def test_sent_messages_are_peeked_oldest_first_without_being_hidden(queues):
    ids = [queues.enqueue(Q, f"m{n}") for n in range(3)]
    assert len(set(ids)) == 3 and all(ids)
    assert [(m.id, m.text) for m in queues.peek(Q)] == list(zip(ids, ["m0", "m1", "m2"]))
    assert [m.text for m in queues.peek(Q, 2)] == ["m0", "m1"]
    assert queues.queue_depth(Q) == 3 and len(queues.peek(Q)) == 3


def test_a_message_sent_with_a_visibility_timeout_is_counted_but_not_seen(queues):
    queues.enqueue(Q, "later", visibility_timeout=60)
    assert queues.peek(Q) == [] and queues.receive(Q, 32, 30) == []
    assert queues.queue_depth(Q) == 1


def test_received_messages_are_hidden_and_counted_until_deleted(queues):
    for n in range(3):
        queues.enqueue(Q, f"m{n}")
    first = queues.receive(Q, 2, 60)
    assert [(m.text, m.dequeue_count) for m in first] == [("m0", 1), ("m1", 1)] and all(m.pop_receipt for m in first)
    assert [m.text for m in queues.peek(Q)] == ["m2"]
    assert queues.queue_depth(Q) == 3
    assert queues.delete(Q, first[0]) is True
    assert queues.delete(Q, first[0]) is False      # already gone
    assert queues.queue_depth(Q) == 2


def test_a_released_message_comes_back_with_its_dequeue_count(queues):
    queues.enqueue(Q, "again")
    [taken] = queues.receive(Q, 1, 60)
    queues.release(Q, taken, 0)
    [peeked] = queues.peek(Q)
    assert (peeked.id, peeked.dequeue_count) == (taken.id, 1)
    [retaken] = queues.receive(Q, 1, 60)
    assert (retaken.id, retaken.dequeue_count) == (taken.id, 2)
    queues.release(Q, retaken, 60)
    assert queues.peek(Q) == [] and queues.queue_depth(Q) == 1


def test_a_page_is_at_most_32_messages(queues):
    for n in range(40):
        queues.enqueue(Q, str(n))
    assert len(queues.peek(Q, 100)) == 32
    assert [m.text for m in queues.receive(Q, 100, 60)] == [str(n) for n in range(32)]
    assert [m.text for m in queues.receive(Q, 100, 60)] == [str(n) for n in range(32, 40)]


def protocol_methods(protocol) -> dict[str, list[str]]:
    import inspect

    return {name: list(inspect.signature(fn).parameters) for name, fn in vars(protocol).items()
            if callable(fn) and not name.startswith("_")}


def test_both_implementations_have_the_ports_methods_with_their_parameters():
    import inspect

    from core.adapters.storage import AsyncStorage, AsyncWorkQueues, Storage, WorkQueues
    from tests.fakes.queues import AsyncFakeQueues

    for protocol, implementations in ((WorkQueues, (Storage, FakeQueues)), (AsyncWorkQueues, (AsyncStorage,
                                                                                            AsyncFakeQueues))):
        for name, params in protocol_methods(protocol).items():
            for cls in implementations:
                assert list(inspect.signature(getattr(cls, name)).parameters)[:len(params)] == params, (cls, name)
