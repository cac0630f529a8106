"""InvokeWithResponseStream (boto3's invoke_with_response_stream): event-stream answers for
streamed and buffered functions, errors in InvokeComplete."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from botocore.config import Config

from helpers import awslambdaric_function, threaded_server, write_function

HANDLERS = '''
def echo(event, context):
    print("echoing")
    return event

def fail(event, context):
    raise ValueError("no stream today")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    code = write_function(tmp_path_factory.mktemp("fn"), HANDLERS)
    with threaded_server(awslambdaric_function("echo", code, "app.echo"), awslambdaric_function("fail", code, "app.fail")) as handle:
        yield handle


@pytest.fixture(scope="module")
def client(server):
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}))


def test_a_buffered_answer_arrives_as_one_chunk_then_complete(client):
    response = client.invoke_with_response_stream(FunctionName="echo", Payload=b'{"a": 1}', LogType="Tail")
    events = list(response["EventStream"])
    assert response["StatusCode"] == 200 and response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    assert [list(e) for e in events] == [["PayloadChunk"], ["InvokeComplete"]]
    assert json.loads(events[0]["PayloadChunk"]["Payload"]) == {"a": 1}
    complete = events[1]["InvokeComplete"]
    assert "ErrorCode" not in complete
    assert "echoing" in base64.b64decode(complete["LogResult"]).decode()


def test_a_function_error_is_reported_in_invoke_complete(client):
    events = list(client.invoke_with_response_stream(FunctionName="fail", Payload=b"{}")["EventStream"])
    complete = events[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "ValueError"
    assert json.loads(complete["ErrorDetails"])["errorMessage"] == "no stream today"


def test_dry_run_and_unknown_functions(client):
    assert client.invoke_with_response_stream(FunctionName="echo", InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke_with_response_stream(FunctionName="nope", Payload=b"{}")
