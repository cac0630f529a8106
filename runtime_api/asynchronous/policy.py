"""What happens to an asynchronous invocation, decided without I/O: whether a claimed event may
run, what its attempt's result means (a retry after Lambda's delay, a throttle that waits without
using an attempt, or the end), and what its end sends where (the invocation record for a
destination, the message for a dead-letter queue), in the formats of the AWS Lambda Developer
Guide ("Capturing records of Lambda asynchronous invocations", "Dead-letter queues").

Lambda's rules, as the guide gives them:

* a function error (the function's own, a timeout, a crash) is retried up to
  `MaximumRetryAttempts` times (0-2, default 2), about one minute after the first attempt and two
  minutes after the second;
* a throttled event (every environment busy) waits and is tried again, with a backoff from one
  second up to five minutes, without using an attempt;
* an event older than `MaximumEventAgeInSeconds` (60-21,600, default six hours) is not run: it ends
  with `EventAgeExceeded`, its retries (or its waiting) cut short;
* an event that ends goes to the on-success or on-failure destination as an invocation record, and
  a failed one to the dead-letter queue too, as the event itself with `RequestID`, `ErrorCode` and
  `ErrorMessage` attributes.

A time scale (`--async-time-scale`) multiplies every delay and age, so that tests of retries and
ages take seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid

import msgspec

from ..store import DELIVER, FAILED, INVOKE, SUCCEEDED, Event, NewEvent
from .invoke_config import EventInvokeConfig, Target, parse_target

RETRY_DELAYS = (60.0, 120.0)  # seconds before the first and the second retry
THROTTLE_BACKOFF = (1.0, 300.0)  # first and longest wait of a throttled event
DELIVERY_ATTEMPTS = 3  # tries to hand a record to its destination before it is counted as failed
SUCCESS, RETRIES_EXHAUSTED, EVENT_AGE_EXCEEDED = "Success", "RetriesExhausted", "EventAgeExceeded"
RECORD, DEAD_LETTER = "record", "dead-letter"  # what a delivery carries


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """What one attempt gave: the function's answer, as an Invoke API caller would have seen it."""

    payload: bytes
    function_error: str | None  # "Unhandled", or None
    executed_version: str
    status_code: int = 200
    error_type: str | None = None  # the errorType of a failed attempt (Sandbox.Timedout...)


THROTTLED = "throttled"


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    delay: float  # seconds from now
    give_back: bool  # a throttle: the attempt does not count
    result: str


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    state: str  # SUCCEEDED or FAILED
    condition: str  # Success, RetriesExhausted or EventAgeExceeded
    response: Response | None  # the last attempt's, if one was made
    result: str


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The rules with their time scale."""

    scale: float = 1.0

    def age_limit(self, config: EventInvokeConfig) -> float:
        """Seconds an event may wait, on this time scale."""
        return config.max_age * self.scale

    def before_attempt(self, event: Event, config: EventInvokeConfig, now: float) -> Finish | None:
        """Whether a claimed invocation may run (its attempt counted). It may not once it is older
        than its maximum age, nor when a host died while it ran its last allowed attempt."""
        if now - event.enqueued > self.age_limit(config):
            return Finish(FAILED, EVENT_AGE_EXCEEDED, None, EVENT_AGE_EXCEEDED)
        if event.attempts > config.retries + 1:
            return Finish(FAILED, RETRIES_EXHAUSTED, None, f"{RETRIES_EXHAUSTED}: its host stopped during its last attempt")
        return None

    def after_attempt(self, event: Event, config: EventInvokeConfig, outcome: Response | str, now: float,
                      throttles: int = 0) -> Retry | Finish:
        if outcome == THROTTLED:
            delay = min(THROTTLE_BACKOFF[0] * 2 ** throttles, THROTTLE_BACKOFF[1]) * self.scale
            if now + delay - event.enqueued > self.age_limit(config):
                delay = max(0.0, event.enqueued + self.age_limit(config) - now)  # it expires in the queue then
            return Retry(delay, True, "throttled")
        assert isinstance(outcome, Response)
        if outcome.function_error is None:
            return Finish(SUCCEEDED, SUCCESS, outcome, SUCCESS)
        error = outcome.error_type or outcome.function_error
        if event.attempts > config.retries:
            return Finish(FAILED, RETRIES_EXHAUSTED, outcome, f"{RETRIES_EXHAUSTED}: {error}")
        delay = RETRY_DELAYS[min(event.attempts, len(RETRY_DELAYS)) - 1] * self.scale
        return Retry(delay, False, error)

    def delivery_retry(self, event: Event) -> float | None:
        """Seconds before a failed delivery is tried again, or None: it has failed for good."""
        if event.attempts >= DELIVERY_ATTEMPTS:
            return None
        return RETRY_DELAYS[0] * self.scale * event.attempts


def follow_ups(event: Event, finish: Finish, config: EventInvokeConfig, dead_letter: str | None, *,
               function_arn: str, region: str, now: float) -> list[NewEvent]:
    """What an ended invocation sends: its record to the destination for its condition (an
    invocation of a destination function, or a delivery), and a failed event to the dead-letter
    queue."""
    made: list[NewEvent] = []
    destination = config.on_success if finish.state == SUCCEEDED else config.on_failure
    if destination is not None:
        record = invocation_record(event, finish, function_arn, now)
        made.append(_to(parse_target(destination), event, record, {"kind": RECORD, "condition": finish.condition,
                                                                   "functionArn": function_arn, "region": region},
                        now))
    if finish.state == FAILED and dead_letter is not None:
        made.append(_to(parse_target(dead_letter), event, dead_letter_message(event, finish),
                        {"kind": DEAD_LETTER, "functionArn": function_arn, "region": region}, now))
    return made


def _to(target: Target | None, event: Event, payload: bytes, request: dict, now: float) -> NewEvent:
    assert target is not None, "destinations are checked when they are configured"
    if target.kind == "function":  # Lambda invokes a destination function asynchronously
        return NewEvent(id=str(uuid.uuid4()), kind=INVOKE, function=target.name, payload=payload, request={},
                        enqueued=now, due=now)
    return NewEvent(id=str(uuid.uuid4()), kind=DELIVER, function=event.function, payload=payload,
                    request={**request, "requestId": event.id}, target=str(target), enqueued=now, due=now)


def invocation_record(event: Event, finish: Finish, function_arn: str, now: float) -> bytes:
    """The invocation record Lambda sends a destination."""
    record = {
        "version": "1.0",
        "timestamp": _timestamp(now),
        "requestContext": {
            "requestId": event.id,
            "functionArn": function_arn,
            "condition": finish.condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": _json_or_text(event.payload),
    }
    if finish.response is not None:
        response = finish.response
        context = {"statusCode": response.status_code, "executedVersion": response.executed_version}
        if response.function_error is not None:
            context["functionError"] = response.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(response.payload) if response.payload else None
    return json.dumps(record, separators=(",", ":")).encode()


def dead_letter_message(event: Event, finish: Finish) -> bytes:
    """What Lambda sends a dead-letter queue: the event as the message body, and why in its
    attributes (as SQS's SendMessage takes them)."""
    response = finish.response
    message = finish.condition
    if response is not None and response.payload:
        body = _json_or_text(response.payload)
        message = body.get("errorMessage", message) if isinstance(body, dict) else str(body)
    attributes = {
        "RequestID": {"DataType": "String", "StringValue": event.id},
        "ErrorCode": {"DataType": "Number", "StringValue": str(response.status_code if response else 429)},
        "ErrorMessage": {"DataType": "String", "StringValue": str(message)[:1024]},
    }
    return json.dumps({"MessageBody": event.payload.decode(errors="replace"), "MessageAttributes": attributes},
                      separators=(",", ":")).encode()


def _json_or_text(data: bytes) -> object:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data.decode(errors="replace")


def _timestamp(now: float) -> str:
    moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
