"""moto's Lambda runs real code through lambdalet (runtime_api/moto/), as moto's users write their
tests: boto3's create_function with a zip made in the test, under the in-process `mock_aws` and
against moto's server (a ThreadedMotoServer in this process, and `python -m runtime_api.moto` as
a process of its own). No Docker: these machines have no Docker engine, and nothing here asks for one.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile

import boto3
import pytest

pytest.importorskip("moto.server", reason="moto[server] (the test extra) is needed")

from moto import mock_aws  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

import runtime_api.moto  # noqa: E402
from benchmarks.common import free_port  # noqa: E402
from helpers import REPO  # noqa: E402
from sandbox import runtime_cache  # noqa: E402

REGION = "us-east-1"
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"

HANDLER = """
import os, time
import boto3

def handler(event, context):
    print("handling", event.get("say", "nothing"))
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("write"):
        boto3.client("s3").put_object(Bucket=event["write"], Key="from-lambda", Body=event.get("say", "").encode())
    return {"version": "one", "event": event, "endpoint": os.environ["AWS_ENDPOINT_URL"],
            "greeting": os.environ.get("GREETING"), "init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "memory": context.memory_limit_in_mb, "name": context.function_name}
"""


def zipped(files: dict[str, str]) -> bytes:
    """A deployment package as a user's test makes it (files readable by everyone, as `zip` keeps them)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100644 << 16
            bundle.writestr(info, text)
    return buffer.getvalue()


@pytest.fixture(scope="module", autouse=True)
def integration(tmp_path_factory):
    """The integration, installed for the module as a conftest.py installs it; packages are
    extracted into the module's own cache (the runtimes' cache stays the user's, fetched once)."""
    saved = {key: os.environ.get(key) for key in ("XDG_CACHE_HOME", "LAMBDALET_CACHE")}
    os.environ["LAMBDALET_CACHE"] = str(runtime_cache.cache_dir())
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    installed = runtime_api.moto.install()
    yield installed
    runtime_api.moto.uninstall()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def moto_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Aws:
    """boto3 clients as the test's code makes them: in-process (mock_aws) or at a moto server."""

    def __init__(self, endpoint: str | None) -> None:
        self.endpoint = endpoint

    def client(self, service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def role(self) -> str:
        """The execution role moto wants to exist."""
        iam = self.client("iam")
        try:
            return iam.get_role(RoleName="lambda-role")["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            return iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def create_function(self, name: str, files: dict[str, str] | None = None, **settings) -> dict:
        settings = {"Runtime": PYTHON, "Handler": "app.handler", **settings}
        settings.setdefault("Code", {"ZipFile": zipped(files or {"app.py": HANDLER})})
        settings = {key: value for key, value in settings.items() if value is not None}
        return self.client("lambda").create_function(FunctionName=name, Role=self.role(), **settings)

    def invoke(self, name: str, event: dict, **options) -> tuple[dict, object]:
        response = self.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event), **options)
        body = response["Payload"].read()
        return response, json.loads(body) if body else None


@pytest.fixture(params=["mock_aws", "server"])
def aws(request, moto_server):
    if request.param == "mock_aws":
        with mock_aws():
            yield Aws(None)
    else:
        yield Aws(moto_server)
        urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()


# -- invoke -------------------------------------------------------------------------------------

def test_invoke_returns_the_handlers_result_and_an_exception_is_an_unhandled_function_error(aws):
    aws.create_function("greeter", Environment={"Variables": {"GREETING": "hi"}}, MemorySize=256)

    response, result = aws.invoke("greeter", {"say": "hello"})
    failed, error = aws.invoke("greeter", {"fail": True})

    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert result["event"] == {"say": "hello"} and result["greeting"] == "hi"
    assert result["memory"] == "256" and result["name"] == "greeter"
    assert result["endpoint"].startswith("http://127.0.0.1:")  # moto, never AWS
    assert failed["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"


def test_a_function_running_past_its_timeout_is_stopped_with_lambdas_error(aws):
    aws.create_function("sleeper", Timeout=1)

    response, error = aws.invoke("sleeper", {"sleep": 30})
    after, result = aws.invoke("sleeper", {"say": "again"})

    assert response["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert "FunctionError" not in after and result["event"] == {"say": "again"}  # a new environment


def test_log_type_tail_carries_the_functions_print(aws):
    aws.create_function("talker")

    response, _ = aws.invoke("talker", {"say": "from the handler"}, LogType="Tail")

    tail = base64.b64decode(response["LogResult"]).decode()
    assert "handling from the handler" in tail
    assert "REPORT RequestId:" in tail


def test_an_event_invocation_runs_the_function(aws):
    aws.client("s3").create_bucket(Bucket="results")
    aws.create_function("worker")

    response, _ = aws.invoke("worker", {"write": "results", "say": "queued"}, InvocationType="Event")

    assert response["StatusCode"] == 202
    # moto runs an Event invocation before it answers, so its effect is there when invoke returns
    assert aws.client("s3").get_object(Bucket="results", Key="from-lambda")["Body"].read() == b"queued"


def test_a_dry_run_runs_nothing(aws):
    aws.client("s3").create_bucket(Bucket="results")
    aws.create_function("worker")

    response, _ = aws.invoke("worker", {"write": "results"}, InvocationType="DryRun")

    assert response["StatusCode"] == 204
    assert aws.client("s3").list_objects_v2(Bucket="results").get("KeyCount") == 0


# -- triggers ------------------------------------------------------------------------------------

NOTIFIED = """
import json, boto3

def handler(event, context):
    s3 = boto3.client("s3")
    for record in event["Records"]:
        key = record["s3"]["object"]["key"]
        body = s3.get_object(Bucket=record["s3"]["bucket"]["name"], Key=key)["Body"].read()
        s3.put_object(Bucket="processed", Key=key, Body=body.upper())
"""


def test_an_s3_notification_invokes_the_function_which_writes_to_another_bucket(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="uploads")
    s3.create_bucket(Bucket="processed")
    arn = aws.create_function("on-upload", {"app.py": NOTIFIED})["FunctionArn"]
    s3.put_bucket_notification_configuration(Bucket="uploads", NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]})

    s3.put_object(Bucket="uploads", Key="note.txt", Body=b"hello")

    assert s3.get_object(Bucket="processed", Key="note.txt")["Body"].read() == b"HELLO"


SNS_HANDLER = """
import boto3

def handler(event, context):
    message = event["Records"][0]["Sns"]["Message"]
    boto3.client("s3").put_object(Bucket="processed", Key="sns", Body=message.encode())
"""


def test_an_sns_subscription_invokes_the_function(aws):
    aws.client("s3").create_bucket(Bucket="processed")
    arn = aws.create_function("on-message", {"app.py": SNS_HANDLER})["FunctionArn"]
    sns = aws.client("sns")
    topic = sns.create_topic(Name="news")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)

    sns.publish(TopicArn=topic, Message="extra")

    assert aws.client("s3").get_object(Bucket="processed", Key="sns")["Body"].read() == b"extra"


BATCH_HANDLER = """
import json, boto3

def handler(event, context):
    bodies = [record["body"] for record in event["Records"]]
    s3 = boto3.client("s3")
    count = len(s3.list_objects_v2(Bucket="processed").get("Contents", []))
    s3.put_object(Bucket="processed", Key=f"batch-{count}", Body=json.dumps(bodies).encode())
"""


def test_an_sqs_event_source_mapping_delivers_a_batch(aws):
    aws.client("s3").create_bucket(Bucket="processed")
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.create_function("consumer", {"app.py": BATCH_HANDLER})
    for body in ("one", "two"):  # waiting before the mapping exists
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    aws.client("lambda").create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="consumer", BatchSize=10)

    sqs.send_message(QueueUrl=queue, MessageBody="three")  # moto polls the queue as a message arrives

    s3 = aws.client("s3")
    batches = [json.loads(s3.get_object(Bucket="processed", Key=item["Key"])["Body"].read())
               for item in s3.list_objects_v2(Bucket="processed")["Contents"]]
    assert batches == [["one", "two", "three"]]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # the batch succeeded: deleted


# -- updates, layers, other runtimes -------------------------------------------------------------

def test_update_function_code_and_configuration_take_effect_on_the_next_invocation(aws):
    aws.create_function("changing")
    _, before = aws.invoke("changing", {})
    client = aws.client("lambda")

    client.update_function_code(FunctionName="changing", ZipFile=zipped({"app.py": HANDLER.replace('"one"', '"two"')}))
    _, after_code = aws.invoke("changing", {})
    client.update_function_configuration(FunctionName="changing", Environment={"Variables": {"GREETING": "hey"}})
    _, after_configuration = aws.invoke("changing", {})

    assert before["version"] == "one" and before["greeting"] is None
    assert after_code["version"] == "two"
    assert after_configuration["version"] == "two" and after_configuration["greeting"] == "hey"


def test_a_function_moto_no_longer_has_stops_with_the_next_change(aws):
    aws.create_function("gone")
    aws.invoke("gone", {})
    aws.client("lambda").delete_function(FunctionName="gone")

    aws.create_function("next")
    aws.invoke("next", {})

    assert [config.name for config in runtime_api.moto.installed().served()
            if config.region == REGION and config.version == "$LATEST"] == ["next"]


def test_a_published_version_keeps_its_code_while_latest_changes(aws):
    aws.create_function("versioned")
    client = aws.client("lambda")
    version = client.publish_version(FunctionName="versioned")["Version"]

    client.update_function_code(FunctionName="versioned", ZipFile=zipped({"app.py": HANDLER.replace('"one"', '"two"')}))
    _, latest = aws.invoke("versioned", {})
    # the qualified name: moto 5.2's invoke does not read the Qualifier parameter
    _, published = aws.invoke(f"versioned:{version}", {})

    assert latest["version"] == "two"
    assert published["version"] == "one"


LAYER_USER = """
import shared

def handler(event, context):
    return {"from_layer": shared.VALUE, "where": shared.__file__}
"""


def test_a_layers_module_is_importable(aws):
    layer = aws.client("lambda").publish_layer_version(
        LayerName="shared", Content={"ZipFile": zipped({"python/shared.py": "VALUE = 'from the layer'\n"})},
        CompatibleRuntimes=[PYTHON])
    aws.create_function("layered", {"app.py": LAYER_USER}, Layers=[layer["LayerVersionArn"]])

    response, result = aws.invoke("layered", {})

    assert "FunctionError" not in response, result
    assert result["from_layer"] == "from the layer"


NODE_HANDLER = """
export const handler = async (event) => ({
  node: process.version, execution: process.env.AWS_EXECUTION_ENV, endpoint: process.env.AWS_ENDPOINT_URL, echo: event,
});
"""


def test_a_nodejs_function_runs_too(aws):
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Node.js runtime interface client")
    major = subprocess.run([node, "--version"], capture_output=True, text=True).stdout[1:].split(".")[0]
    aws.create_function("node-fn", {"index.mjs": NODE_HANDLER}, Runtime=f"nodejs{major}.x", Handler="index.handler")

    response, result = aws.invoke("node-fn", {"from": "moto"})

    assert "FunctionError" not in response, result
    assert result["node"].startswith(f"v{major}.") and result["execution"] == f"AWS_Lambda_nodejs{major}.x"
    assert result["echo"] == {"from": "moto"} and result["endpoint"].startswith("http://127.0.0.1:")


def test_snapstart_where_configured_restores_the_function(aws):
    aws.create_function("snappy", SnapStart={"ApplyOn": "PublishedVersions"})
    aws.create_function("plain")

    _, snappy = aws.invoke("snappy", {})
    _, plain = aws.invoke("plain", {})

    assert snappy["init"] == "snap-start"
    assert plain["init"] == "on-demand"
    configuration = aws.client("lambda").get_function_configuration(FunctionName="snappy")
    assert configuration["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}


# -- what stays moto's, and bad input -----------------------------------------------------------

def test_a_container_image_function_keeps_motos_own_path():
    with mock_aws():
        aws = Aws(None)
        aws.create_function("image", PackageType="Image", Runtime=None,
                            Code={"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"})

        # moto's own path: its documentation says invoking an image "is not yet supported"
        with pytest.raises(Exception):
            aws.client("lambda").invoke(FunctionName="image", Payload=b"{}")

    assert "image" not in [config.name for config in runtime_api.moto.installed().served()]


def test_a_runtime_lambdalet_has_none_for_keeps_motos_own_path():
    with mock_aws():
        aws = Aws(None)
        aws.create_function("java", Runtime="java21", Handler="example.Handler::handleRequest")

        response = aws.client("lambda").invoke(FunctionName="java", Payload=b"{}")

    # moto's Docker path, which cannot run here: its own answer (not JSON, its own "Handled"), not lambdalet's
    assert response["FunctionError"] == "Handled"
    assert response["Payload"].read().decode().startswith("error running docker")
    assert "java" not in [config.name for config in runtime_api.moto.installed().served()]


def test_a_package_that_is_not_a_zip_is_a_function_error_saying_so():
    with mock_aws():
        aws = Aws(None)
        aws.create_function("broken", Code={"ZipFile": b"this is no zip"})

        response, error = aws.invoke("broken", {})
        # moto keeps serving: another function runs
        aws.create_function("fine")
        ok, _ = aws.invoke("fine", {})

    assert response["FunctionError"] == "Unhandled"
    assert "not a zip file" in error["errorMessage"]
    assert "FunctionError" not in ok


def test_moto_server_as_a_process_runs_functions_through_lambdalet(tmp_path):
    """`python -m runtime_api.moto`: moto's server with the integration, stopped as a user stops it
    (Ctrl-C), its function environments with it."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "runtime_api.moto", "-H", "127.0.0.1", "-p", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        aws = Aws(f"http://127.0.0.1:{port}")
        said = []
        for line in process.stderr:  # werkzeug says where it listens once it does
            said.append(line)
            if "Running on" in line:
                break
        else:
            raise AssertionError(f"moto's server exited: {''.join(said)}")
        aws.client("s3").create_bucket(Bucket="results")
        aws.create_function("remote")

        response, result = aws.invoke("remote", {"write": "results", "say": "over http"})

        assert "FunctionError" not in response, result
        assert result["endpoint"] == f"http://127.0.0.1:{port}"
        assert aws.client("s3").get_object(Bucket="results", Key="from-lambda")["Body"].read() == b"over http"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)

