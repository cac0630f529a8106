"""Handing a record (or a dead-letter message) to where it goes: a file of JSON lines, or an AWS
service through the endpoint the server was given (`--service-endpoint sqs=http://localhost:4566`:
LocalStack, or AWS itself), as Lambda sends to each ("Capturing records of Lambda asynchronous
invocations"):

* SQS: `SendMessage` with the record as its body (a dead-letter message: the event, with its
  `RequestID`, `ErrorCode` and `ErrorMessage` attributes);
* SNS: `Publish`, the same way;
* EventBridge: `PutEvents`, source `lambda`, detail type `Lambda Function Invocation Result -
  Success` (or `- Failure`), the record as its detail;
* S3 (on failure only): `PutObject` at `aws/lambda/async/<function>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>`.

A destination function is not delivered to here: it is invoked asynchronously, through the queue.
The AWS SDK (boto3) is imported only when a record goes to an AWS service. Every call here blocks:
the queue runs it in a worker thread.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid

from collections.abc import Callable
from pathlib import Path

from .invoke_config import SERVICE_NAMES, EventInvokeConfig, Target, describe_destination_config, parse_target
from .policy import DEAD_LETTER


class DeliveryFailed(Exception):
    """The destination did not take the record; the message says why."""


def destination_problem(config: EventInvokeConfig, function: str, served: Callable[[str], str | None],
                        endpoints: dict[str, str], *, base: Path | None = None) -> tuple[str, str] | None:
    """Why these destinations cannot be used for `function` here, as (Lambda's error type, message),
    or None. `served(name)`: the name of the function served by that name, or None."""
    for condition, destination in (("Success", config.on_success), ("Failure", config.on_failure)):
        if destination is not None:
            problem = _target_problem(destination, condition, function, served, endpoints, base,
                                      describe_destination_config(config))
            if problem is not None:
                return problem
    return None


def dead_letter_problem(target_arn: str, function: str, served: Callable[[str], str | None],
                        endpoints: dict[str, str]) -> tuple[str, str] | None:
    """Why this dead-letter target cannot be used for `function` here, or None (Lambda's are SQS
    queues and SNS topics; here a function or a file too)."""
    return _target_problem(target_arn, "DeadLetter", function, served, endpoints, None,
                           f"The provided target ARN {target_arn} is invalid.")


def _target_problem(destination: str, condition: str, function: str, served: Callable[[str], str | None],
                    endpoints: dict[str, str], base: Path | None, invalid: str) -> tuple[str, str] | None:
    target = parse_target(destination, base=base)
    if target is None or (target.kind == "file" and not target.name) or (target.kind == "s3" and condition == "Success") \
            or (target.kind in ("s3", "events") and condition == "DeadLetter"):
        return "InvalidParameterValueException", invalid
    if target.kind == "function" and served(target.name) is None:
        return "InvalidParameterValueException", f"The destination ARN {destination} is invalid."
    if target.kind == "function" and served(target.name) == function:
        return "InvalidParameterValueException", "You can't specify the function as a destination for itself."
    problem = check_service(target, endpoints)
    return ("InvalidParameterValueException", problem) if problem is not None else None


def check_service(target: Target, endpoints: dict[str, str]) -> str | None:
    """Why a record cannot go to this AWS service here, or None when it can."""
    if target.kind not in SERVICE_NAMES:
        return None
    if target.kind not in endpoints:
        return (f"lambdalet sends records to {SERVICE_NAMES[target.kind]} ({target.name}) only through an endpoint "
                f"you give it: serve with --service-endpoint {target.kind}=URL (LocalStack's http://localhost:4566, "
                "or the service's own)")
    try:
        import boto3  # noqa: F401
    except ImportError:
        return f"sending records to {SERVICE_NAMES[target.kind]} needs the AWS SDK for Python: pip install boto3"
    return None


def deliver(target: Target, payload: bytes, request: dict, endpoints: dict[str, str]) -> None:
    """Hand `payload` to `target` (blocking); DeliveryFailed when it does not take it."""
    if target.kind == "file":
        _append(target.name, payload)
        return
    try:
        _send(target, payload, request, endpoints)
    except DeliveryFailed:
        raise
    except Exception as exc:  # the SDK's errors: refused, unreachable, no credentials...
        raise DeliveryFailed(f"{SERVICE_NAMES[target.kind]} {target.name}: {exc}") from None


def _append(path: str, payload: bytes) -> None:
    """One line, written with one `write` to a file opened for appending: lines from several
    processes do not interleave."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, payload + b"\n")
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeliveryFailed(f"{path}: {exc.strerror}") from None


def _send(target: Target, payload: bytes, request: dict, endpoints: dict[str, str]) -> None:
    import boto3

    arn = target.name.split(":")
    region = arn[3] or request.get("region") or "us-east-1"
    client = boto3.client(target.kind, endpoint_url=endpoints[target.kind], region_name=region)
    dead_letter = request.get("kind") == DEAD_LETTER
    message = json.loads(payload) if dead_letter else None
    if target.kind == "sqs":
        url = client.get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])["QueueUrl"]
        if dead_letter:
            client.send_message(QueueUrl=url, MessageBody=message["MessageBody"],
                                MessageAttributes=message["MessageAttributes"])
        else:
            client.send_message(QueueUrl=url, MessageBody=payload.decode())
    elif target.kind == "sns":
        if dead_letter:
            client.publish(TopicArn=target.name, Message=message["MessageBody"],
                           MessageAttributes=message["MessageAttributes"])
        else:
            client.publish(TopicArn=target.name, Message=payload.decode())
    elif target.kind == "events":
        condition = "Success" if request.get("condition") == "Success" else "Failure"
        answer = client.put_events(Entries=[{
            "Source": "lambda", "DetailType": f"Lambda Function Invocation Result - {condition}",
            "Detail": payload.decode(), "EventBusName": target.name,
            "Resources": [request.get("functionArn", ""), target.name],
        }])
        if answer.get("FailedEntryCount"):
            raise DeliveryFailed(f"EventBridge {target.name}: {answer['Entries'][0].get('ErrorMessage')}")
    elif target.kind == "s3":
        function = request.get("functionArn", "").split(":")[6] if request.get("functionArn") else "function"
        moment = datetime.datetime.now(datetime.timezone.utc)
        key = (f"aws/lambda/async/{function}/{moment:%Y/%m/%d}/{moment:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}")
        client.put_object(Bucket=arn[5], Key=key, Body=payload, ContentType="application/json")
