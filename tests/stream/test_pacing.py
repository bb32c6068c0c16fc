"""The joiner waits for the trainer beside it, and only for it."""

from __future__ import annotations

import asyncio

from driftrec.stream.pacing import TrainerBacklog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _still_waiting(waiter: asyncio.Future[None]) -> bool:
    for _ in range(5):  # a few loop turns: enough for a waiter that could go on to go on
        await asyncio.sleep(0)
    return not waiter.done()


def test_the_joiner_waits_for_examples_sent_too_long_ago_and_no_longer() -> None:
    async def scenario() -> None:
        clock = Clock()
        backlog = TrainerBacklog(max_lag_s=1.0, clock=clock)
        backlog.attach()
        backlog.sent(offset=3, examples=60)
        clock.now = 0.8
        backlog.sent(offset=4, examples=60)
        assert not await _still_waiting(asyncio.ensure_future(backlog.room()))  # 0.8 s old
        clock.now = 1.5  # offset 3 is 1.5 s old and unlearned
        waiter = asyncio.ensure_future(backlog.room())
        assert await _still_waiting(waiter)
        backlog.learned(offset=3)  # offset 4 is 0.7 s old: go on
        await asyncio.wait_for(waiter, timeout=1)
        assert backlog.waiting == 60

    asyncio.run(scenario())


def test_a_trainer_elsewhere_never_holds_the_joiner() -> None:
    async def scenario() -> None:
        clock = Clock()
        backlog = TrainerBacklog(max_lag_s=1.0, clock=clock)
        backlog.sent(offset=1, examples=500)  # not attached: not counted
        clock.now = 10.0
        assert backlog.waiting == 0 and not backlog.full
        backlog.attach()
        backlog.sent(offset=2, examples=500)
        clock.now = 20.0
        waiter = asyncio.ensure_future(backlog.room())
        assert await _still_waiting(waiter)
        backlog.detach()  # the examples partition moved away mid-wait
        await asyncio.wait_for(waiter, timeout=1)
        assert backlog.waiting == 0

    asyncio.run(scenario())


def test_a_rewound_trainer_learning_old_offsets_frees_nothing_new() -> None:
    clock = Clock()
    backlog = TrainerBacklog(max_lag_s=1.0, clock=clock)
    backlog.attach()
    backlog.sent(offset=50, examples=30)
    clock.now = 5.0
    backlog.learned(offset=12)  # replaying from its checkpoint
    assert backlog.full and backlog.waiting == 30
    backlog.learned(offset=50)
    assert not backlog.full and backlog.waiting == 0
