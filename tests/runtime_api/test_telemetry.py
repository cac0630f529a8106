"""The Telemetry and Logs APIs: subscriptions and their 400s (unit), buffering, batches, drops
(unit), and what a subscribed extension's destination receives from a real environment, checked
against the Lambda Telemetry API Event schema reference, in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from helpers import CapturedLog, awslambdaric_function, free_port, running_server, write_function
from runtime_api import telemetry as t
from helpers import extension_layer

HTTP = {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/telemetry"}


def body(**changes) -> bytes:
    request = {"schemaVersion": "2022-12-13", "types": ["platform", "function"], "destination": HTTP}
    request.update(changes)
    return json.dumps({k: v for k, v in request.items() if v is not None}).encode()


@pytest.mark.parametrize("request_body, status, error_type, message", [
    (b"{nope", 400, "Telemetry.DeserializationError", "Expecting property name"),
    (b"[]", 400, "Telemetry.DeserializationError", "must be a JSON object"),
    (body(types=[]), 400, "Telemetry.ValidationError", "types should not be empty"),
    (body(types=["platform", "logs"]), 400, "Telemetry.ValidationError", "types should be some of"),
    (body(types=["platform", "platform"]), 400, "Telemetry.ValidationError", "types should be unique"),
    (body(schemaVersion="2020-08-15"), 400, "Telemetry.ValidationError", "schemaVersion '2020-08-15'"),
    (body(schemaVersion=None), 400, "Telemetry.ValidationError", "schemaVersion is required"),
    (body(destination=None), 400, "Telemetry.ValidationError", "destination is required"),
    (body(destination={"protocol": "UDP", "URI": "x"}), 400, "Telemetry.ValidationError", "HTTP or TCP"),
    (body(destination={"protocol": "HTTP", "URI": "http://sandbox.localdomain/x"}), 400,
     "Telemetry.ValidationError", "URI port is not provided"),
    (body(destination={"protocol": "HTTP", "URI": "http://sandbox:9001"}), 400, "Telemetry.ValidationError",
     "port 9001 is reserved"),
    (body(destination={"protocol": "HTTP", "URI": "https://sandbox:4243"}), 400, "Telemetry.ValidationError",
     "should be http://"),
    (body(destination={"protocol": "HTTP", "URI": "http://example.com:4243"}), 403, "Telemetry.AccessDenied",
     "not in the execution environment"),
    (body(buffering={"maxItems": 999}), 400, "Telemetry.ValidationError", "maxItems should be between 1000 and 10000"),
    (body(buffering={"maxItems": 10001}), 400, "Telemetry.ValidationError", "maxItems should be between"),
    (body(buffering={"maxBytes": 262143}), 400, "Telemetry.ValidationError",
     "maxBytes should be between 262144 and 1048576"),
    (body(buffering={"maxBytes": 1048577}), 400, "Telemetry.ValidationError", "maxBytes should be between"),
    (body(buffering={"timeoutMs": 24}), 400, "Telemetry.ValidationError", "timeoutMs should be between 25 and 30000"),
    (body(buffering={"timeoutMs": 30001}), 400, "Telemetry.ValidationError", "timeoutMs should be between"),
    (body(buffering={"timeoutMs": "100"}), 400, "Telemetry.ValidationError", "timeoutMs should be between"),
    (body(types=[], buffering={"maxItems": 1}), 400, "Telemetry.ValidationError",
     "types should not be empty; maxItems should be between"),
])
def test_a_subscription_outside_lambdas_bounds_is_refused(request_body, status, error_type, message):
    reply = t.Telemetry().subscribe(t.TELEMETRY, "ext", request_body, 0.0, open=True)
    answer = json.loads(reply.body)
    assert (reply.status, answer["errorType"]) == (status, error_type) and message in answer["errorMessage"]


def test_subscriptions_close_with_init_and_an_extension_uses_one_api():
    telemetry = t.Telemetry()
    assert telemetry.subscribe(t.TELEMETRY, "ext", body(), 0.0, open=True) == t.OK
    assert telemetry.subscribe(t.TELEMETRY, "ext", body(types=["function"]), 0.0, open=True) == t.OK  # replaces
    assert telemetry.subscribers["ext"].types == ("function",)
    other = telemetry.subscribe(t.LOGS, "ext", body(schemaVersion="2021-03-18"), 0.0, open=True)
    assert other.status == 400 and "already subscribed to the Telemetry API" in json.loads(other.body)["errorMessage"]
    closed = telemetry.subscribe(t.TELEMETRY, "late", body(), 0.0, open=False)
    assert closed.status == 403 and json.loads(closed.body)["errorType"] == "Telemetry.SubscriptionClosed"


def event(n: int, kind: str = "function") -> t.Event:
    return t.Event("2026-01-01T00:00:00.000Z", kind, f"line {n}")


def subscriber(protocol: str = "HTTP", **settings) -> t.Subscriber:
    values = {"max_items": 1000, "max_bytes": 262144, "timeout_ms": 100, **settings}
    return t.Subscriber("ext", t.TELEMETRY, "2022-12-13", ("platform", "function"), values["max_items"],
                        values["max_bytes"], values["timeout_ms"], t.Destination(protocol, 4243))


def test_a_batch_is_due_after_timeout_ms_or_at_max_items():
    sub = subscriber()
    sub.add(event(0), now=10.0)
    assert sub.batch(10.05) is None and sub.deadline() == pytest.approx(10.1)
    assert json.loads(sub.batch(10.1)) == [{"time": "2026-01-01T00:00:00.000Z", "type": "function", "record": "line 0"}]
    sub.delivered()
    for n in range(1000):
        sub.add(event(n), now=20.0)
    assert len(json.loads(sub.batch(20.0))) == 1000  # due at once


def test_a_tcp_batch_is_newline_delimited_json():
    sub = subscriber("TCP")
    sub.add(event(1), 0.0)
    sub.add(event(2), 0.0)
    lines = sub.batch(1.0).splitlines()
    assert [json.loads(line)["record"] for line in lines] == ["line 1", "line 2"]


def test_what_overflows_while_a_batch_is_not_accepted_is_dropped_and_said():
    sub = subscriber()
    for n in range(1000):
        sub.add(event(n), 0.0)
    first = sub.batch(0.0)
    for n in range(1000, 2500):  # while the first batch is not accepted: one batch more is kept
        sub.add(event(n), 1.0)
    assert sub.batch(5.0) is first  # not accepted: the same batch again
    sub.delivered()
    second = json.loads(sub.batch(5.0))
    dropped = second[0]
    assert dropped["type"] == "platform.logsDropped"
    assert dropped["record"]["droppedRecords"] == 500 and dropped["record"]["droppedBytes"] > 0
    assert dropped["record"]["reason"] == t.DROPPED_REASON
    assert [e["record"] for e in second[1:]] == [f"line {n}" for n in range(1000, 1999)]


def test_a_logs_api_subscriber_gets_the_older_records():
    telemetry = t.Telemetry()
    telemetry.subscribe(t.LOGS, "ext", body(schemaVersion="2020-08-15", types=["platform"]), 0.0, open=True)
    old = telemetry.subscribers["ext"]
    start = t.Event("x", "platform.start", {"requestId": "r", "version": "$LATEST", "tracing": {}})
    done = t.Event("x", "platform.runtimeDone", {"requestId": "r", "status": "success", "metrics": {}})
    assert old.wants(start).record == {"requestId": "r", "version": "$LATEST"}
    assert (old.wants(done).type, old.wants(done).record) == ("platform.end", {"requestId": "r"})
    assert old.wants(t.Event("x", "platform.initStart", {})) is None
    telemetry.subscribe(t.LOGS, "ext", body(schemaVersion="2021-03-18", types=["platform"]), 0.0, open=True)
    assert telemetry.subscribers["ext"].wants(done).record == {"requestId": "r", "status": "success"}


# -- the documented schema (Lambda Telemetry API Event schema reference): required and optional
# record fields of each event type.
SCHEMA = {
    "platform.initStart": ({"initializationType", "phase", "functionName", "functionVersion"},
                           {"runtimeVersion", "runtimeVersionArn", "instanceId", "instanceMaxMemory"}),
    "platform.initRuntimeDone": ({"initializationType", "phase", "status"}, {"errorType", "spans"}),
    "platform.initReport": ({"initializationType", "phase", "status", "metrics"}, {"errorType", "spans"}),
    "platform.start": ({"requestId"}, {"version", "tracing", "functionArn"}),
    "platform.runtimeDone": ({"requestId", "status"}, {"metrics", "errorType", "spans", "tracing"}),
    "platform.report": ({"requestId", "status", "metrics"}, {"errorType", "spans", "tracing"}),
    "platform.restoreStart": ({"functionName", "functionVersion"}, {"runtimeVersion", "runtimeVersionArn",
                                                                    "instanceId", "instanceMaxMemory"}),
    "platform.restoreRuntimeDone": ({"status"}, {"errorType", "spans"}),
    "platform.restoreReport": ({"status"}, {"errorType", "metrics", "spans"}),
    "platform.extension": ({"name", "state", "events"}, {"errorType"}),
    "platform.telemetrySubscription": ({"name", "state", "types"}, set()),
    "platform.logsDropped": ({"droppedBytes", "droppedRecords", "reason"}, set()),
}
REPORT_METRICS = ({"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"},
                  {"initDurationMs", "restoreDurationMs", "billedRestoreDurationMs", "postRuntimeExtensionsDurationMs"})


def check_schema(item: dict) -> None:
    assert set(item) == {"time", "type", "record"}
    assert len(item["time"]) == 24 and item["time"].endswith("Z") and item["time"][10] == "T"
    kind, record = item["type"], item["record"]
    if kind in ("function", "extension"):
        assert isinstance(record, (str, dict))
        return
    required, optional = SCHEMA[kind]
    assert required <= set(record) <= required | optional, (kind, record)
    if "status" in record:
        assert record["status"] in ("success", "failure", "error", "timeout")
    if kind in ("platform.initStart", "platform.initRuntimeDone", "platform.initReport"):
        assert record["initializationType"] in ("on-demand", "provisioned-concurrency", "snap-start")
        assert record["phase"] in ("init", "invoke")
    if "metrics" in record and kind == "platform.report":
        assert REPORT_METRICS[0] <= set(record["metrics"]) <= REPORT_METRICS[0] | REPORT_METRICS[1]
        assert isinstance(record["metrics"]["billedDurationMs"], int)
    if kind in ("platform.runtimeDone", "platform.initReport", "platform.restoreReport") and "metrics" in record:
        assert isinstance(record["metrics"]["durationMs"], float | int)
    for span in record.get("spans", ()):
        assert set(span) == {"name", "start", "durationMs"}
    if "tracing" in record:
        assert record["tracing"]["type"] == "X-Amzn-Trace-Id" and record["tracing"]["value"]


class Destination:
    """The test's telemetry listener: HTTP (a JSON array per request) or TCP (NDJSON), collecting
    every event it is sent, in order."""

    def __init__(self, port: int, protocol: str = "HTTP") -> None:
        self.port, self.protocol = port, protocol
        self.events: list[dict] = []
        self.requests = 0
        self._changed = trio.Condition()

    async def serve(self, nursery) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, self._handle, listeners)

    async def _handle(self, stream) -> None:
        data = b""
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
            if self.protocol == "HTTP" and b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(rest) >= length:
                    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                    await self._received(json.loads(rest[:length]))
                    return
        if self.protocol == "TCP":
            await self._received([json.loads(line) for line in data.splitlines()])

    async def _received(self, events: list[dict]) -> None:
        async with self._changed:
            self.requests += 1
            self.events += events
            self._changed.notify_all()

    async def wait_for(self, predicate) -> None:
        with trio.fail_after(60):  # a bound only: a broken delivery fails the test instead of hanging it
            async with self._changed:
                while not predicate(self.events):
                    await self._changed.wait()


FUNCTION = '''
def handler(event, context):
    for n in range(event.get("lines", 1)):
        print(f"hello from the function {n}")
    return {"request": context.aws_request_id}
'''


def subscribing_function(tmp_path: Path, subscription: dict, api: str = "telemetry"):
    code = write_function(tmp_path / "code", FUNCTION)
    env = {"EXT_SUBSCRIBE": json.dumps({"api": api, "body": subscription})}
    return awslambdaric_function("fn", code, layers=[str(extension_layer(tmp_path))], isolation="none", env=env)


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


@pytest.mark.parametrize("version", ["2022-12-13", "2025-01-29"])
async def test_a_subscriber_receives_every_event_of_an_invocation_in_order(tmp_path, nursery, version):
    destination = Destination(free_port())
    await destination.serve(nursery)
    log = CapturedLog()
    config = subscribing_function(tmp_path, {
        "schemaVersion": version, "types": ["platform", "function", "extension"], "buffering": {"timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": f"http://sandbox.localdomain:{destination.port}/events"}})
    async with running_server(config, sink=log) as server:
        request = json.loads((await server.invoke("fn")).payload)["request"]
        await destination.wait_for(lambda events: "platform.report" in types_of(events))
    assert "recorder subscribed 200 \"OK\"" in log.text
    for item in destination.events:
        check_schema(item)
    platform = [e for e in destination.events if e["type"].startswith("platform.")]
    assert types_of(platform) == ["platform.initStart", "platform.extension", "platform.telemetrySubscription",
                                  "platform.initRuntimeDone", "platform.initReport", "platform.start",
                                  "platform.runtimeDone", "platform.report"]
    kinds = types_of(destination.events)
    line = next(e for e in destination.events if e["type"] == "function" and "hello" in e["record"])
    assert line["record"] == "hello from the function 0"
    assert kinds.index("platform.start") < destination.events.index(line) < kinds.index("platform.runtimeDone")
    assert any(e["type"] == "extension" and e["record"].startswith("recorder registered") for e in destination.events)
    init_start, extension, subscription = platform[:3]
    assert init_start["record"]["functionName"] == "fn" and init_start["record"]["initializationType"] == "on-demand"
    assert extension["record"] == {"name": "recorder", "state": "Ready", "events": ["INVOKE", "SHUTDOWN"]}
    assert subscription["record"] == {"name": "recorder", "state": "Subscribed",
                                      "types": ["platform", "function", "extension"]}
    start, done, report = platform[5:]
    assert start["record"]["requestId"] == done["record"]["requestId"] == report["record"]["requestId"] == request
    assert done["record"]["status"] == "success" and done["record"]["metrics"]["producedBytes"] == len(
        json.dumps({"request": request}))
    assert [span["name"] for span in done["record"]["spans"]] == ["responseLatency", "responseDuration"]
    assert report["record"]["status"] == "success" and report["record"]["metrics"]["memorySizeMB"] == 128
    assert "initDurationMs" in report["record"]["metrics"]


async def test_a_refusing_destination_is_retried_and_what_overflowed_is_said_dropped(tmp_path, nursery):
    destination = Destination(free_port())
    log = CapturedLog()
    config = subscribing_function(tmp_path, {
        "schemaVersion": "2022-12-13", "types": ["platform", "function"], "buffering": {"maxItems": 1000},
        "destination": {"protocol": "HTTP", "URI": f"http://sandbox:{destination.port}"}})
    async with running_server(config, sink=log) as server:
        await server.invoke("fn", b'{"lines": 3000}')  # while nothing listens: refused, and retried
        await destination.serve(nursery)  # the listener comes: the two batches kept are delivered
        await destination.wait_for(lambda events: destination.requests >= 2)
        later = json.loads((await server.invoke("fn")).payload)["request"]  # the server kept serving
        await destination.wait_for(lambda events: any(
            e["type"] == "platform.report" and e["record"]["requestId"] == later for e in events))
    dropped = [e for e in destination.events if e["type"] == "platform.logsDropped"]
    for each in dropped:
        check_schema(each)
    lost = sum(each["record"]["droppedRecords"] for each in dropped)
    lines = [e for e in destination.events if e["type"] == "function" and e["record"].startswith("hello")]
    assert lost > 0 and len(lines) + lost >= 3000


async def test_a_tcp_destination_gets_newline_delimited_json(tmp_path, nursery):
    destination = Destination(free_port(), "TCP")
    await destination.serve(nursery)
    config = subscribing_function(tmp_path, {
        "schemaVersion": "2025-01-29", "types": ["platform"], "buffering": {"timeoutMs": 25},
        "destination": {"protocol": "TCP", "port": destination.port}})
    async with running_server(config) as server:
        await server.invoke("fn")
        await destination.wait_for(lambda events: "platform.report" in types_of(events))
    assert "function" not in types_of(destination.events)


async def test_the_logs_api_sends_the_older_records(tmp_path, nursery):
    destination = Destination(free_port())
    await destination.serve(nursery)
    config = subscribing_function(tmp_path, {
        "schemaVersion": "2021-03-18", "types": ["platform"], "buffering": {"timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": f"http://sandbox:{destination.port}"}}, api="logs")
    async with running_server(config) as server:
        request = json.loads((await server.invoke("fn")).payload)["request"]
        await destination.wait_for(lambda events: "platform.report" in types_of(events))
    assert types_of(destination.events) == ["platform.extension", "platform.logsSubscription", "platform.start",
                                            "platform.runtimeDone", "platform.report"]
    assert destination.events[3]["record"] == {"requestId": request, "status": "success"}


async def test_the_logs_api_and_the_telemetry_api_carry_the_same_function_lines(tmp_path, nursery):
    """Both APIs are fed from one stream: an extension on each gets the function's lines alike."""
    destinations = {"logs": Destination(free_port()), "telemetry": Destination(free_port())}
    env = {}
    for api, destination in destinations.items():
        await destination.serve(nursery)
        env[f"EXT_SUBSCRIBE_{api.upper()}_AGENT"] = json.dumps({"api": api, "body": {
            "schemaVersion": "2021-03-18" if api == "logs" else "2022-12-13", "types": ["platform", "function"],
            "buffering": {"timeoutMs": 25}, "destination": {"protocol": "HTTP", "URI": f"http://sandbox:{destination.port}"}}})
    layers = [str(extension_layer(tmp_path, f"{api}-agent")) for api in destinations]
    config = awslambdaric_function("fn", write_function(tmp_path / "code", FUNCTION), layers=layers, isolation="none",
                                   env=env)
    async with running_server(config) as server:
        await server.invoke("fn", b'{"lines": 3}')
        for destination in destinations.values():
            await destination.wait_for(lambda events: "platform.report" in types_of(events))
    logs, telemetry = ([e["record"] for e in destination.events if e["type"] == "function"]
                       for destination in destinations.values())
    assert logs == telemetry == [f"hello from the function {n}" for n in range(3)]


async def test_a_malformed_subscription_from_an_extension_is_refused_and_init_goes_on(tmp_path):
    log = CapturedLog()
    config = subscribing_function(tmp_path, {"schemaVersion": "2022-12-13", "types": [],
                                             "destination": {"protocol": "HTTP", "URI": "http://sandbox:80"}})
    async with running_server(config, sink=log) as server:
        assert (await server.invoke("fn")).function_error is None
    assert ('recorder subscribed 400 {"errorMessage":"types should not be empty",'
            '"errorType":"Telemetry.ValidationError"}') in log.text
