"""Durable handlers written with AWS's durable execution SDK, one per behaviour the tests show.
Each writes what it must tell a test (a callback id, an attempt) to files under $OUT."""

import json
import os
from pathlib import Path

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.exceptions import CallbackError
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.waits import WaitForConditionConfig, WaitForConditionDecision

OUT = Path(os.environ.get("OUT", "/tmp"))


def tell(name: str, value) -> None:
    """Written whole, then renamed: a test waiting for the file never reads half of it."""
    part = OUT / f".{name}.part"
    part.write_text(json.dumps(value))
    part.rename(OUT / name)


@durable_execution
def steps_and_wait(event, context: DurableContext):
    added = context.step(lambda _: event["x"] + 1, name="add")
    context.wait(Duration.from_seconds(30), name="pause")
    return {"result": context.step(lambda _: added * 2, name="double")}


def flaky(step: StepContext):
    attempts = OUT / "attempts"
    count = int(attempts.read_text()) + 1 if attempts.exists() else 1
    attempts.write_text(str(count))
    if count < 3:
        raise RuntimeError(f"attempt {count} fails")
    return count


@durable_execution
def retries(event, context: DurableContext):
    strategy = create_retry_strategy(RetryStrategyConfig(max_attempts=3, initial_delay=Duration.from_seconds(10),
                                                         backoff_rate=1, jitter_strategy=JitterStrategy.NONE))
    return context.step(flaky, name="flaky", config=StepConfig(retry_strategy=strategy))


@durable_execution
def callback(event, context: DurableContext):
    waiting = context.create_callback(name="approval", config=CallbackConfig(timeout=Duration.from_seconds(event["timeout"])))
    tell("callback", waiting.callback_id)
    try:
        return {"approved": waiting.result()}
    except CallbackError as exc:
        return {"callback": type(exc).__name__}


@durable_execution
def failing(event, context: DurableContext):
    context.step(lambda _: "fine", name="before")
    raise ValueError("failing on purpose")


@durable_execution
def long_wait(event, context: DurableContext):
    context.wait(Duration.from_hours(1), name="long")
    return "never"


@durable_execution
def chained(event, context: DurableContext):
    return {"plain": context.invoke("plain", {"n": event["n"]}, name="call-plain"),
            "durable": context.invoke("steps", {"x": event["n"]}, name="call-steps")}


def plain(event, context):
    return {"doubled": event["n"] * 2}


@durable_execution
def parallel_and_map(event, context: DurableContext):
    squares = context.map([1, 2, 3], lambda ctx, item, index, items: ctx.step(lambda _: item * item, name=f"square-{index}"),
                          name="squares")
    pair = context.parallel([lambda ctx: ctx.step(lambda _: "left", name="left"),
                             lambda ctx: ctx.step(lambda _: "right", name="right")], name="pair")
    return {"squares": squares.get_results(), "pair": pair.get_results()}


@durable_execution
def child_context(event, context: DurableContext):
    def inner(child: DurableContext):
        first = child.step(lambda _: 20, name="inner-step")
        child.wait(Duration.from_seconds(5), name="inner-wait")
        return first + 1
    return context.run_in_child_context(inner, name="child")


@durable_execution
def wait_for_condition(event, context: DurableContext):
    def check(state, _):
        return state + 1

    def decide(state, attempts):
        return (WaitForConditionDecision.stop_polling() if state >= 3
                else WaitForConditionDecision.continue_waiting(Duration.from_seconds(5)))

    return context.wait_for_condition(check, WaitForConditionConfig(wait_strategy=decide, initial_state=0),
                                      name="poll")


@durable_execution
def restartable(event, context: DurableContext):
    first = context.step(lambda _: "before", name="before")
    context.wait(Duration.from_minutes(5), name="through-the-restart")
    return [first, context.step(lambda _: "after", name="after")]


@durable_execution
def _after_a_crash(event, context: DurableContext):
    return context.step(lambda _: "survived", name="after-crash")


def crash_once(event, context):
    """The first invocation's runtime dies before the SDK answers; the next one replays."""
    marker = OUT / "crashed"
    if not marker.exists():
        marker.write_text("once")
        os._exit(1)
    return _after_a_crash(event, context)


def always_crash(event, context):
    os._exit(3)
