"""Asynchronous invocation as Lambda does it, seen through boto3: retries with Lambda's delays (on a
time scale of 0.01, so a minute is 0.6 s), the maximum event age, throttled events waiting without
using attempts, invocation records on success and on failure, dead-letter messages, destination
functions, and the event invoke config operations with Lambda's answers for bad input.

Each handler writes what it saw to a file (its request id and event, one line each), so a test can
count attempts; records go to file sinks, and the tests wait for their lines."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import boto3
import botocore.config
import msgspec
import pytest
import trio

from helpers import running_server, write_function
from runtime_api import FunctionConfig, ServerConfig
from runtime_api.asynchronous.invoke_config import DeadLetterConfig, DestinationConfig, EventInvokeConfig, OnDestination
from runtime_api.server import Server

SCALE = 0.01
HANDLER = """
import json, os, time

def handler(event, context):
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(json.dumps({"id": context.aws_request_id, "event": event}) + "\\n")
    if event.get("fail"):
        raise ValueError("failing on purpose")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"echo": event}
"""
GATED = """
import json, os

def handler(event, context):
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(json.dumps({"id": context.aws_request_id, "event": event}) + "\\n")
    if event.get("hold"):
        wait_at_gate(context)
    return {"echo": event}
"""


def function(tmp_path: Path, name: str = "worker", source: str = HANDLER, **settings) -> FunctionConfig:
    code = write_function(tmp_path / f"{name}-code", source)
    return FunctionConfig(name=name, code=str(code), isolation="none",
                          env={"SEEN": str(tmp_path / f"{name}-seen.jsonl"), **settings.pop("env", {})}, **settings)


def on_failure(path: Path, **settings) -> EventInvokeConfig:
    return EventInvokeConfig(destination_config=DestinationConfig(on_failure=OnDestination(f"file:{path}")), **settings)


def client(server: Server, validate: bool = True):
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=botocore.config.Config(retries={"max_attempts": 0}, parameter_validation=validate))


async def call(fn, *args, **kwargs):
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def lines(path: Path, count: int) -> list[dict]:
    """The first `count` JSON lines of `path`, once it has them (a bound only so that a broken test fails)."""
    with trio.fail_after(60):
        while True:
            found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
            if len(found) >= count:
                return found
            await trio.sleep(0.01)


def serving(*functions: FunctionConfig, **settings):
    return Server(ServerConfig(port=0, function=list(functions), async_time_scale=SCALE, **settings))


async def test_a_failing_event_is_tried_three_times_then_its_record_goes_to_the_on_failure_destination(tmp_path):
    failed = tmp_path / "failed.jsonl"
    async with serving(function(tmp_path, event_invoke_config=on_failure(failed))) as server:
        lambda_ = client(server)
        answer = await call(lambda_.invoke, FunctionName="worker", InvocationType="Event", Payload=b'{"fail": true}')
        assert answer["StatusCode"] == 202
        request_id = answer["ResponseMetadata"]["RequestId"]
        (record,) = await lines(failed, 1)
    seen = await lines(tmp_path / "worker-seen.jsonl", 3)
    assert [attempt["id"] for attempt in seen] == [request_id] * 3
    assert record["version"] == "1.0"
    assert record["requestContext"] == {"requestId": request_id, "condition": "RetriesExhausted",
                                        "approximateInvokeCount": 3,
                                        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:worker:$LATEST"}
    assert record["requestPayload"] == {"fail": True}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "failing on purpose"
    assert record["timestamp"].endswith("Z")


async def test_maximum_retry_attempts_0_gives_one_attempt(tmp_path):
    failed = tmp_path / "failed.jsonl"
    async with serving(function(tmp_path)) as server:
        lambda_ = client(server)
        configured = await call(lambda_.put_function_event_invoke_config, FunctionName="worker", MaximumRetryAttempts=0,
                                DestinationConfig={"OnFailure": {"Destination": f"file:{failed}"}})
        assert configured["MaximumRetryAttempts"] == 0
        await call(lambda_.invoke, FunctionName="worker", InvocationType="Event", Payload=b'{"fail": true}')
        (record,) = await lines(failed, 1)
        # A success invoked after it runs after its only attempt: the failed one was not retried.
        await call(lambda_.invoke, FunctionName="worker", Payload=b'{"after": 1}')
    seen = [json.loads(line) for line in (tmp_path / "worker-seen.jsonl").read_text().splitlines()]
    assert [attempt["event"] for attempt in seen] == [{"fail": True}, {"after": 1}]
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestContext"]["condition"] == "RetriesExhausted"


async def test_an_event_older_than_its_maximum_age_goes_to_the_destination_with_EventAgeExceeded(tmp_path, gate):
    failed = tmp_path / "failed.jsonl"
    worker = function(tmp_path, source=GATED + gate.handler_snippet, concurrency=1,
                      env={"GATE_PORT": str(gate.port)},
                      event_invoke_config=on_failure(failed, maximum_event_age_in_seconds=60))
    async with serving(worker) as server:
        lambda_ = client(server)
        await call(lambda_.invoke, FunctionName="worker", InvocationType="Event", Payload=b'{"hold": true}')
        await gate.wait_arrivals(1)  # the only environment is busy from now on
        waiting = await call(lambda_.invoke, FunctionName="worker", InvocationType="Event", Payload=b'{"late": 1}')
        (record,) = await lines(failed, 1)  # dropped while it waited: 60 s on a scale of 0.01
        await gate.release_all()
        await call(lambda_.invoke, FunctionName="worker", Payload=b'{"after": 1}')
    assert record["requestContext"]["requestId"] == waiting["ResponseMetadata"]["RequestId"]
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"late": 1}
    assert "responseContext" not in record
    seen = [json.loads(line)["event"] for line in (tmp_path / "worker-seen.jsonl").read_text().splitlines()]
    assert {"late": 1} not in seen


async def test_a_throttled_burst_runs_every_event_exactly_once(tmp_path):
    succeeded = tmp_path / "succeeded.jsonl"
    worker = function(tmp_path, concurrency=1, event_invoke_config=EventInvokeConfig(
        destination_config=DestinationConfig(on_success=OnDestination(f"file:{succeeded}"))))
    async with serving(worker) as server:
        lambda_ = client(server)
        accepted = set()
        for number in range(20):
            answer = await call(lambda_.invoke, FunctionName="worker", InvocationType="Event",
                                Payload=json.dumps({"number": number, "sleep": 0.01}).encode())
            accepted.add(answer["ResponseMetadata"]["RequestId"])
        records = await lines(succeeded, 20)
    seen = [json.loads(line) for line in (tmp_path / "worker-seen.jsonl").read_text().splitlines()]
    assert sorted(attempt["id"] for attempt in seen) == sorted(accepted)  # each once, none lost
    assert {record["requestContext"]["requestId"] for record in records} == accepted
    assert all(record["requestContext"]["approximateInvokeCount"] == 1 for record in records)


async def test_a_success_record_carries_the_response(tmp_path):
    succeeded = tmp_path / "succeeded.jsonl"
    async with serving(function(tmp_path)) as server:
        lambda_ = client(server)
        await call(lambda_.put_function_event_invoke_config, FunctionName="worker",
                   DestinationConfig={"OnSuccess": {"Destination": f"file:{succeeded}"}})
        answer = await call(lambda_.invoke, FunctionName="worker", InvocationType="Event", Payload=b'{"n": 7}')
        (record,) = await lines(succeeded, 1)
    assert record["requestContext"]["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert record["requestContext"]["condition"] == "Success"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"echo": {"n": 7}}


async def test_a_destination_function_is_invoked_with_the_record_and_a_dead_letter_file_gets_the_event(tmp_path):
    dead_letters = tmp_path / "dead.jsonl"
    worker = function(tmp_path, event_invoke_config=EventInvokeConfig(
        maximum_retry_attempts=0, destination_config=DestinationConfig(
            on_failure=OnDestination("arn:aws:lambda:us-east-1:123456789012:function:collector"))),
        dead_letter_config=DeadLetterConfig(f"file:{dead_letters}"))
    async with serving(worker, function(tmp_path, "collector")) as server:
        answer = await call(client(server).invoke, FunctionName="worker", InvocationType="Event",
                            Payload=b'{"fail": true, "order": 3}')
        (collected,) = await lines(tmp_path / "collector-seen.jsonl", 1)
        (message,) = await lines(dead_letters, 1)
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert collected["event"]["requestContext"]["requestId"] == request_id
    assert collected["event"]["requestPayload"] == {"fail": True, "order": 3}
    assert json.loads(message["MessageBody"]) == {"fail": True, "order": 3}
    assert message["MessageAttributes"]["RequestID"] == {"DataType": "String", "StringValue": request_id}
    assert message["MessageAttributes"]["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert message["MessageAttributes"]["ErrorMessage"]["StringValue"] == "failing on purpose"


async def test_the_event_invoke_config_operations_answer_as_lambda_does(tmp_path):
    async with serving(function(tmp_path), function(tmp_path, "other")) as server:
        lambda_ = client(server)
        arn = "arn:aws:lambda:us-east-1:123456789012:function:worker:$LATEST"
        missing = lambda_.exceptions.ResourceNotFoundException
        with pytest.raises(missing, match=rf"The function {arn.replace('$', '[$]')} doesn't have an EventInvokeConfig"):
            await call(lambda_.get_function_event_invoke_config, FunctionName="worker")
        put = await call(lambda_.put_function_event_invoke_config, FunctionName="worker", MaximumRetryAttempts=1,
                         MaximumEventAgeInSeconds=120)
        assert put["FunctionArn"] == arn
        assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
        assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 120)
        # Put replaces (what it leaves out is removed); Update changes what it gives.
        await call(lambda_.put_function_event_invoke_config, FunctionName="worker", MaximumRetryAttempts=0)
        got = await call(lambda_.get_function_event_invoke_config, FunctionName="worker")
        assert got["MaximumRetryAttempts"] == 0 and "MaximumEventAgeInSeconds" not in got
        updated = await call(lambda_.update_function_event_invoke_config, FunctionName="worker",
                             DestinationConfig={"OnFailure": {"Destination": "other"}})
        assert updated["MaximumRetryAttempts"] == 0
        assert updated["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {"Destination": "other"}}
        listed = await call(lambda_.list_function_event_invoke_configs, FunctionName="worker")
        assert [config["FunctionArn"] for config in listed["FunctionEventInvokeConfigs"]] == [arn]
        deleted = await call(lambda_.delete_function_event_invoke_config, FunctionName="worker")
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(missing):
            await call(lambda_.delete_function_event_invoke_config, FunctionName="worker")
        with pytest.raises(missing, match="The function doesn't exist."):
            await call(lambda_.put_function_event_invoke_config, FunctionName="nobody", MaximumRetryAttempts=1)
        with pytest.raises(missing):
            await call(lambda_.update_function_event_invoke_config, FunctionName="worker", MaximumRetryAttempts=1)


@pytest.mark.parametrize("settings, error, message", [
    ({"MaximumRetryAttempts": 3}, "ValidationException",
     "1 validation error detected: Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: Member must "
     "have value less than or equal to 2"),
    ({"MaximumEventAgeInSeconds": 30}, "ValidationException",
     "1 validation error detected: Value '30' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member "
     "must have value greater than or equal to 60"),
    ({"MaximumRetryAttempts": -1, "MaximumEventAgeInSeconds": 21601}, "ValidationException",
     "2 validation errors detected: Value '-1' at 'maximumRetryAttempts' failed to satisfy constraint: Member must "
     "have value greater than or equal to 0; Value '21601' at 'maximumEventAgeInSeconds' failed to satisfy "
     "constraint: Member must have value less than or equal to 21600"),
    ({}, "InvalidParameterValueException", "You must specify at least one of error handling or destination setting."),
    ({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:lambda:us-east-1:123456789012:function:nobody"}}},
     "InvalidParameterValueException",
     "The destination ARN arn:aws:lambda:us-east-1:123456789012:function:nobody is invalid."),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "worker"}}}, "InvalidParameterValueException",
     "You can't specify the function as a destination for itself."),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:iam::123456789012:role/x"}}},
     "InvalidParameterValueException",
     "The provided destination config DestinationConfig(onSuccess=OnSuccess(destination=arn:aws:iam::123456789012:"
     "role/x), onFailure=null) is invalid."),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:s3:::bucket"}}}, "InvalidParameterValueException",
     "The provided destination config DestinationConfig(onSuccess=OnSuccess(destination=arn:aws:s3:::bucket), "
     "onFailure=null) is invalid."),
    ({"DestinationConfig": {"OnFailure": {"Destination": "not an arn"}}}, "ValidationException",
     "1 validation error detected: Value 'not an arn' at 'destinationConfig.onFailure.destination' failed to "
     "satisfy constraint: Member must satisfy regular expression pattern: "),
])
async def test_bad_event_invoke_configs_get_lambdas_errors_and_change_nothing(tmp_path, settings, error, message):
    async with serving(function(tmp_path)) as server:
        lambda_ = client(server, validate=False)  # as an SDK that does not check ranges itself would send them
        with pytest.raises(lambda_.exceptions.ClientError) as raised:
            await call(lambda_.put_function_event_invoke_config, FunctionName="worker", **settings)
        assert raised.value.response["Error"]["Code"] == error
        assert raised.value.response["Error"]["Message"].startswith(message)
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        listed = await call(lambda_.list_function_event_invoke_configs, FunctionName="worker")
        assert listed["FunctionEventInvokeConfigs"] == []


async def test_an_aws_service_destination_needs_its_endpoint(tmp_path):
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:failures"
    async with serving(function(tmp_path)) as server:
        lambda_ = client(server)
        with pytest.raises(lambda_.exceptions.InvalidParameterValueException,
                           match="--service-endpoint sqs=URL"):
            await call(lambda_.put_function_event_invoke_config, FunctionName="worker",
                       DestinationConfig={"OnFailure": {"Destination": queue_arn}})
    async with serving(function(tmp_path), service_endpoints={"sqs": "http://127.0.0.1:9"}) as server:
        put = await call(client(server).put_function_event_invoke_config, FunctionName="worker",
                         DestinationConfig={"OnFailure": {"Destination": queue_arn}})
        assert put["DestinationConfig"]["OnFailure"] == {"Destination": queue_arn}


async def test_records_reach_an_sqs_queue_and_an_sns_topic_through_their_endpoint(tmp_path, monkeypatch):
    """--service-endpoint: an on-failure record and a dead letter delivered to a real SQS/SNS
    implementation (moto's server), read back with boto3 as a consumer would."""
    from moto.server import ThreadedMotoServer

    from helpers import free_port

    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(key, value)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        failures = sqs.create_queue(QueueName="failures")["QueueUrl"]
        dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
        sns = boto3.client("sns", endpoint_url=endpoint, region_name="us-east-1")
        topic = sns.create_topic(Name="dead-topic")["TopicArn"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=dead_arn, Attributes={"RawMessageDelivery": "true"})
        config = EventInvokeConfig(maximum_retry_attempts=0, destination_config=DestinationConfig(
            on_failure=OnDestination("arn:aws:sqs:us-east-1:123456789012:failures")))
        worker = function(tmp_path, event_invoke_config=config,
                          dead_letter_config=DeadLetterConfig(topic))
        async with serving(worker, service_endpoints={"sqs": endpoint, "sns": endpoint}) as server:
            answer = await call(client(server).invoke, FunctionName="worker", InvocationType="Event",
                                Payload=b'{"fail": true}')
            request_id = answer["ResponseMetadata"]["RequestId"]

            async def received(url: str) -> dict:
                while True:  # SQS's long poll: waits for the message, not for time
                    got = await call(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=5,
                                     MessageAttributeNames=["All"])
                    if got.get("Messages"):
                        return got["Messages"][0]

            with trio.fail_after(60):
                record = json.loads((await received(failures))["Body"])
                letter = await received(dead)
        assert record["requestContext"]["requestId"] == request_id
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["responsePayload"]["errorType"] == "ValueError"
        assert json.loads(letter["Body"]) == {"fail": True}  # a dead letter is the event itself
    finally:
        moto.stop()


async def test_a_destination_the_config_file_names_that_is_not_served_stops_start_up(tmp_path):
    from runtime_api.config import ConfigError

    worker = msgspec.structs.replace(function(tmp_path, event_invoke_config=EventInvokeConfig(
        destination_config=DestinationConfig(on_success=OnDestination("nobody")))), source="template.yaml:9")
    with pytest.RaisesGroup(pytest.RaisesExc(ConfigError, match=r"function worker \(template.yaml:9\): "
                                                                r"event_invoke_config: The destination ARN nobody is "
                                                                r"invalid"), flatten_subgroups=True):
        async with running_server(worker):
            pass


def test_a_sam_functions_event_invoke_config_and_dead_letter_queue_are_read_from_the_template(tmp_path):
    from runtime_api.template import load_template
    from template_projects import project

    path = project(tmp_path, """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Orders:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              DeadLetterQueue: {Type: SQS, TargetArn: arn:aws:sqs:us-east-1:123456789012:dead}
              EventInvokeConfig:
                MaximumRetryAttempts: 1
                MaximumEventAgeInSeconds: 600
                DestinationConfig:
                  OnFailure: {Type: Lambda, Destination: !GetAtt Failures.Arn}
          Failures:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: src/, Handler: app.handler, Runtime: python3.12}
          TooMany:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src/
              Handler: app.handler
              Runtime: python3.12
              EventInvokeConfig: {MaximumRetryAttempts: 5}
        """, {"src/app.py": "def handler(event, context):\n    return event\n"})
    stack = load_template(path)
    (orders,) = [function for function in stack.functions if function.name == "Orders"]
    assert orders.event_invoke_config == EventInvokeConfig(
        maximum_retry_attempts=1, maximum_event_age_in_seconds=600, destination_config=DestinationConfig(
            on_failure=OnDestination("arn:aws:lambda:us-east-1:123456789012:function:Failures")))
    assert orders.dead_letter_config == DeadLetterConfig("arn:aws:sqs:us-east-1:123456789012:dead")
    (problem,) = [problem for problem in stack.problems if problem.function == "TooMany"]
    assert "Member must have value less than or equal to 2" in str(problem)


def test_the_config_file_gives_lambdas_settings_with_file_destinations_relative_to_it(tmp_path):
    from runtime_api.config import ConfigError, load_config

    (tmp_path / "functions.toml").write_text("""
[[function]]
name = "worker"
event_invoke_config = { MaximumRetryAttempts = 0, DestinationConfig = { OnSuccess = { Destination = "file:records/ok.jsonl" } } }
dead_letter_config = { TargetArn = "file:///var/tmp/dead.jsonl" }
""")
    (function_config,) = load_config(tmp_path / "functions.toml").function
    assert function_config.event_invoke_config.on_success == f"file:{tmp_path}/records/ok.jsonl"
    assert function_config.event_invoke_config.retries == 0
    assert function_config.dead_letter_config.target_arn == "file:/var/tmp/dead.jsonl"
    (tmp_path / "bad.toml").write_text('[[function]]\nname = "worker"\n'
                                       'event_invoke_config = { MaximumEventAgeInSeconds = 59 }\n')
    with pytest.raises(ConfigError, match="function worker: event_invoke_config: 1 validation error detected: "
                                          "Value '59' at 'maximumEventAgeInSeconds'"):
        load_config(tmp_path / "bad.toml")


async def test_an_event_throttled_by_synchronous_callers_waits_without_using_an_attempt(tmp_path, gate):
    succeeded = tmp_path / "succeeded.jsonl"
    worker = function(tmp_path, source=GATED + gate.handler_snippet, concurrency=1, env={"GATE_PORT": str(gate.port)},
                      event_invoke_config=EventInvokeConfig(maximum_retry_attempts=0, destination_config=DestinationConfig(
                          on_success=OnDestination(f"file:{succeeded}"))))
    async with serving(worker) as server, trio.open_nursery() as nursery:
        lambda_ = client(server)
        nursery.start_soon(partial(call, lambda_.invoke, FunctionName="worker", Payload=b'{"hold": true}'))
        await gate.wait_arrivals(1)  # a synchronous caller has the only environment
        answer = await call(lambda_.invoke, FunctionName="worker", InvocationType="Event", Payload=b'{"queued": 1}')
        request_id = answer["ResponseMetadata"]["RequestId"]
        with trio.fail_after(60):
            while not [event for event in await server.events.store.events(ids=[request_id])
                       if event.result == "throttled"]:
                await trio.sleep(0.01)
        await gate.release_all()
        (record,) = await lines(succeeded, 1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["approximateInvokeCount"] == 1  # throttles used none of its one attempt
