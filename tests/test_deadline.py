"""``Deadline`` behaves as ``asyncio.timeout_at`` around each step, with one timer per run."""

from __future__ import annotations

import asyncio

import pytest

from tether import Limits
from tether.core import Outcome
from tether.providers import ModelRequest, ModelResponse, ScriptedModel, ToolCall
from tether.runtime.deadline import Deadline, DeadlineQueue
from tether.runtime.scope import Harness
from tether.tools import tool


async def _inside(deadline: Deadline, seconds: float, *, keep: bool = False) -> str:
    deadline.enter()
    try:
        await asyncio.sleep(seconds)
    except BaseException as exc:
        if deadline.exit(type(exc), keep=keep):
            raise TimeoutError from exc
        raise
    deadline.exit(None, keep=keep)
    return "done"


async def test_work_past_the_deadline_is_cancelled_as_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 0.05)
    with pytest.raises(TimeoutError):
        await _inside(deadline, 5)
    assert deadline.expired and not deadline.active


async def test_work_within_the_deadline_finishes_and_leaves_no_timer() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 5)
    assert await _inside(deadline, 0) == "done"
    assert not deadline.expired
    assert deadline._handle is None  # not kept: cancelled on exit


async def test_a_deadline_already_past_fires_at_the_next_await() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() - 1)
    with pytest.raises(TimeoutError):
        await _inside(deadline, 5)


async def test_a_kept_timer_serves_the_next_entry_and_one_that_passed_between_fires_at_once() -> (
    None
):
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 0.1)
    assert await _inside(deadline, 0, keep=True) == "done"
    kept = deadline._handle
    assert kept is not None and await _inside(deadline, 0, keep=True) == "done"
    assert deadline._handle is kept  # one timer for both entries
    await asyncio.sleep(0.15)  # the deadline passes while nothing is inside: nothing happens
    with pytest.raises(TimeoutError):  # ... until the next entry
        await _inside(deadline, 5, keep=True)
    deadline.close()
    assert deadline._handle is None


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 5)
    task = asyncio.create_task(_inside(deadline, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadline.expired


async def test_a_cancellation_from_outside_at_the_deadline_is_not_swallowed() -> None:
    """As with ``asyncio.timeout``: a task cancelled from outside as well as by the deadline
    is cancelled, not timed out."""
    loop = asyncio.get_running_loop()
    deadline = Deadline(loop.time() + 0.02)

    async def outer() -> str:
        deadline.enter()
        try:
            await asyncio.sleep(0.05)  # the deadline cancels the task here ...
        except BaseException as exc:
            asyncio.current_task().cancel()  # type: ignore[union-attr]  # ... and so does someone else
            if deadline.exit(type(exc)):
                raise TimeoutError from exc
            raise
        return "done"

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(outer())


class _SlowModel:
    provider, name = "scripted", "slow"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(0.3)
        return ModelResponse(content="late")


async def test_concurrent_timed_steps_of_one_run_each_get_the_run_timeout() -> None:
    """Two tool steps of one scope at once (a hand-written loop gathering them): the second
    cannot share the run's timer, and still stops at the run's deadline."""

    @tool
    async def wait(seconds: float) -> str:
        """Wait.

        Args:
            seconds: How long.
        """
        await asyncio.sleep(seconds)
        return "waited"

    harness = Harness(models=_SlowModel(), tools=[wait], limits=Limits(timeout_s=0.2), trace=False)
    async with harness.open_run("go") as run:
        started = asyncio.get_running_loop().time()
        steps = await asyncio.gather(
            run.tool_call(ToolCall(id="a", name="wait", arguments={"seconds": 5})),
            run.tool_call(ToolCall(id="b", name="wait", arguments={"seconds": 5})),
        )
        took = asyncio.get_running_loop().time() - started
    assert [s.outcome for s in steps] == [Outcome.LIMIT_EXCEEDED] * 2
    assert took < 2  # neither waited for its tool's five seconds
    assert run.result().outcome == Outcome.LIMIT_EXCEEDED


async def test_a_run_timeout_between_steps_stops_the_next_model_call() -> None:
    harness = Harness(models=_SlowModel(), limits=Limits(timeout_s=0.05), trace=False)
    async with harness.open_run("go") as run:
        assert not (await run.input()).stopped
        await asyncio.sleep(0.1)  # the run's own code takes the rest of its time
        step = await run.model_call()
    assert step.outcome == Outcome.LIMIT_EXCEEDED
    assert "timeout_s" in (run.result().stop_reason or "")


async def test_deadlines_of_one_queue_each_fire_at_their_own_time() -> None:
    loop = asyncio.get_running_loop()
    queue = DeadlineQueue(loop)
    first = Deadline(loop.time() + 0.05, queue)
    second = Deadline(loop.time() + 0.15, queue)
    done_first = Deadline(loop.time() + 0.03, queue)  # made later but due earlier: own timer
    started = loop.time()

    async def timed(deadline: Deadline) -> float:
        with pytest.raises(TimeoutError):
            await _inside(deadline, 5)
        return loop.time() - started

    one, two, three = await asyncio.gather(timed(first), timed(second), timed(done_first))
    assert 0.04 <= one < 0.14 and 0.14 <= two < 1 and 0.02 <= three < 0.05
    assert first.expired and second.expired and done_first.expired


async def test_a_dropped_deadline_hands_the_timer_on_to_the_next() -> None:
    loop = asyncio.get_running_loop()
    queue = DeadlineQueue(loop)
    dropped = Deadline(loop.time() + 0.03, queue)
    kept = Deadline(loop.time() + 0.1, queue)
    assert await _inside(dropped, 0) == "done"  # done in time: its entry is dropped
    started = loop.time()
    with pytest.raises(TimeoutError):
        await _inside(kept, 5)
    assert 0.05 <= loop.time() - started < 1  # at its own time: not at the dropped one's
    assert not dropped.expired


async def test_runs_of_one_harness_share_one_loop_timer() -> None:
    """A run that ends in time does not schedule and cancel a loop timer of its own."""
    harness = Harness(models=ScriptedModel([{"text": "hi"}]), trace=False)
    handles = set()
    for _ in range(5):
        async with harness.open_run("go") as run:
            await run.input()
            step = await run.model_call()
            assert step.value is not None
            await run.output(step.value.content)
        _loop, queues = harness._deadlines
        [queue] = queues.values()
        handles.add(id(queue._handle))
    assert len(handles) == 1 and not queue._entries


def test_one_harness_run_from_two_threads_with_their_own_loops() -> None:
    """Each event loop gets deadline queues of its own: runs in two threads (two loops) at
    once all finish, and a run past its deadline still stops, in either thread."""
    import threading

    harness = Harness(
        models=[_SlowModel()], limits=Limits(timeout_s=0.2), trace=False
    )  # 0.3 s replies: every model call times out
    fast = Harness(models=[ScriptedModel([{"text": "hi"}])], trace=False)
    outcomes: list[object] = []
    errors: list[BaseException] = []

    async def runs() -> None:
        for _ in range(3):
            async with harness.open_run("slow") as run:
                outcomes.append((await run.model_call()).outcome)
            for _ in range(20):
                async with fast.open_run("go") as run:
                    step = await run.model_call()
                    assert step.value is not None
                    await run.output(step.value.content)
                outcomes.append(run.result().outcome)

    def thread() -> None:
        try:
            asyncio.run(runs())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert outcomes.count(Outcome.LIMIT_EXCEEDED) == 6
    assert outcomes.count(Outcome.FINAL_ANSWER) == 120
