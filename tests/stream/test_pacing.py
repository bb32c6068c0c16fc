"""The joiner waits for the trainer beside it, and only for it."""

from __future__ import annotations

import asyncio

from driftrec.stream.pacing import TrainerBacklog


async def _waits(backlog: TrainerBacklog) -> bool:
    """Whether ``room()`` is still waiting after the loop had a few turns."""
    waiter = asyncio.ensure_future(backlog.room())
    for _ in range(5):
        await asyncio.sleep(0)
    waiting = not waiter.done()
    waiter.cancel()
    return waiting


def test_a_full_backlog_holds_the_joiner_until_the_trainer_learns() -> None:
    async def scenario() -> None:
        backlog = TrainerBacklog(limit=100)
        backlog.attach()
        backlog.sent(offset=3, examples=60)
        assert not await _waits(backlog)  # 60 <= 100
        backlog.sent(offset=4, examples=60)
        waiter = asyncio.ensure_future(backlog.room())
        await asyncio.sleep(0)
        assert not waiter.done()
        backlog.learned(offset=3)  # 60 left
        await asyncio.wait_for(waiter, timeout=1)
        assert backlog.waiting == 60

    asyncio.run(scenario())


def test_a_trainer_elsewhere_never_holds_the_joiner() -> None:
    async def scenario() -> None:
        backlog = TrainerBacklog(limit=10)
        backlog.sent(offset=1, examples=500)  # not attached: not counted
        assert backlog.waiting == 0 and not await _waits(backlog)
        backlog.attach()
        backlog.sent(offset=2, examples=500)
        waiter = asyncio.ensure_future(backlog.room())
        await asyncio.sleep(0)
        assert not waiter.done()
        backlog.detach()  # the examples partition moved away mid-wait
        await asyncio.wait_for(waiter, timeout=1)
        assert backlog.waiting == 0

    asyncio.run(scenario())


def test_a_rewound_trainer_learning_old_offsets_frees_nothing_new() -> None:
    backlog = TrainerBacklog(limit=10)
    backlog.attach()
    backlog.sent(offset=50, examples=30)
    backlog.learned(offset=12)  # replaying from its checkpoint
    assert backlog.full and backlog.waiting == 30
    backlog.learned(offset=50)
    assert not backlog.full and backlog.waiting == 0
