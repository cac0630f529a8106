"""The Extensions API: Go's JSON error texts, init and invocation gating in the protocol, and an
internal extension living in a function's runtime, end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from helpers import awslambdaric_function, running_server, write_function
from runtime_api import protocol as p
from runtime_api import replies as r
from runtime_api.extensions import Extensions
from runtime_api.gojson import go_json_error


@pytest.mark.parametrize("body, message", [
    (b"{no", "invalid character 'n' looking for beginning of object key string"),
    (b"nope", "invalid character 'o' in literal null (expecting 'u')"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    (b"[1 2]", "invalid character '2' after array element"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b"", "unexpected end of JSON input"),
    (b'{"events":', "unexpected end of JSON input"),
    (b"{} x", "invalid character 'x' after top-level value"),
])
def test_register_bodies_are_refused_in_gos_words(body, message):
    assert go_json_error(body) == message


@dataclass
class Inv:
    request_id: str
    deadline_ms: int = 1700000000000
    function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:fn"
    trace_id: str = "Root=1-00000000-000000000000000000000000;Sampled=0"


def registered(proto: p.EnvironmentProtocol, name: str = "ext", events=("INVOKE",)) -> str:
    """Register an extension through the protocol; its identifier."""
    reply, *_ = proto.handle(p.ExtensionRegisterRequested(name, json.dumps({"events": list(events)}).encode()))
    assert reply.status == 200
    return dict(reply.headers)["Lambda-Extension-Identifier"]


def invoke_event(reply, inv: Inv) -> None:
    """`reply` answers an extension's event/next with `inv`'s INVOKE event."""
    assert reply.status == 200 and "Lambda-Extension-Event-Identifier" in dict(reply.headers)
    assert json.loads(reply.body) == {
        "eventType": "INVOKE", "deadlineMs": inv.deadline_ms, "requestId": inv.request_id,
        "invokedFunctionArn": inv.function_arn, "tracing": {"type": "X-Amzn-Trace-Id", "value": inv.trace_id}}


def test_init_waits_for_every_extension_and_closes_registration():
    proto = p.EnvironmentProtocol(Extensions("fn", "$LATEST", "app.handler"))
    ext = registered(proto)
    inv = Inv("id-1")
    proto.handle(p.InvocationArrived(inv))
    assert proto.handle(p.NextRequested()) == [p.PARK]  # the runtime is ready, the extension not yet
    assert proto.handle(p.ExtensionNextRequested(ext)) == [p.InitDone(), p.Wake(), p.PARK]
    assert proto.handle(p.NextRequested()) == [p.WakeExtensions(), p.Deliver(inv)]
    (event,) = proto.handle(p.ExtensionNextRequested(ext), woken=True)
    invoke_event(event, inv)
    (refused,) = proto.handle(p.ExtensionRegisterRequested("late", b'{"events":["INVOKE"]}'))
    assert json.loads(refused.body)["errorType"] == "Extension.RegistrationClosed"


def test_the_environment_is_idle_only_when_the_runtime_and_invoke_extensions_asked_again():
    proto = p.EnvironmentProtocol(Extensions("fn", "$LATEST", "app.handler"))
    ext = registered(proto)
    proto.handle(p.ExtensionNextRequested(ext))
    proto.handle(p.NextRequested())
    inv = Inv("id-1")
    proto.handle(p.InvocationArrived(inv))
    proto.handle(p.NextRequested())
    proto.handle(p.ExtensionNextRequested(ext), woken=True)
    proto.handle(p.ErrorPosted("id-1", b"{}", None, None))
    assert proto.handle(p.NextRequested()) == [p.RuntimeFinished(), p.PARK]
    assert not proto.idle
    assert proto.handle(p.ExtensionNextRequested(ext)) == [p.CycleDone(), p.Wake(), p.PARK]
    assert proto.idle


def test_an_extension_that_exits_no_longer_holds_the_environment():
    proto = p.EnvironmentProtocol(Extensions("fn", "$LATEST", ""))
    ext = registered(proto)
    proto.handle(p.NextRequested())
    assert proto.handle(p.ExtensionErrorPosted(ext, "Extension.Failed", exiting=True)) == [
        r.ACCEPTED, p.InitDone(), p.Wake()]
    (refused,) = proto.handle(p.ExtensionNextRequested(ext))
    assert json.loads(refused.body)["errorType"] == "Extension.InvalidExtensionState"


def test_an_error_report_without_its_error_type_header_is_refused():
    proto = p.EnvironmentProtocol(Extensions("fn", "$LATEST", ""))
    ext = registered(proto)
    for exiting in (False, True):
        (refused,) = proto.handle(p.ExtensionErrorPosted(ext, None, exiting=exiting))
        assert refused.status == 403 and json.loads(refused.body) == {
            "errorMessage": "Lambda-Extension-Function-Error-Type not found", "errorType": "Extension.MissingHeader"}
    assert proto.handle(p.ExtensionErrorPosted(ext, "Extension.Failed", exiting=False)) == [r.ACCEPTED]


@pytest.mark.parametrize("identifier, error_type", [
    (None, "Extension.MissingExtensionIdentifier"),
    ("not-a-uuid", "Extension.InvalidExtensionIdentifier"),
    ("00000000-0000-0000-0000-000000000000", "Extension.UnknownExtensionIdentifier"),
])
def test_requests_naming_no_registered_extension_are_refused(identifier, error_type):
    proto = p.EnvironmentProtocol(Extensions("fn", "$LATEST", ""))
    for event in (p.ExtensionNextRequested(identifier), p.ExtensionErrorPosted(identifier, "E", exiting=True)):
        (refused,) = proto.handle(event)
        assert refused.status == 403 and json.loads(refused.body)["errorType"] == error_type


@pytest.mark.parametrize("name, body, error_type", [
    (None, b'{"events":["INVOKE"]}', "Extension.InvalidExtensionName"),
    ("x", b'{"events":["SHUTDOWN"]}', "Extension.InvalidEventType"),
    ("x", b'{"events":["INVOKE"],"configurationKeys":["a"]}', "InvalidRequestFormat"),
    ("x", b"{no", "InvalidRequestFormat"),
])
def test_registration_errors(name, body, error_type):
    reply = Extensions("fn", "$LATEST", "").register(name, body)
    assert reply.status == 403 and json.loads(reply.body)["errorType"] == error_type


def test_at_most_ten_extensions():
    proto = p.EnvironmentProtocol(Extensions("fn", "$LATEST", ""))
    for i in range(10):
        registered(proto, f"e{i}")
    (refused,) = proto.handle(p.ExtensionRegisterRequested("e10", b"{}"))
    assert json.loads(refused.body)["errorType"] == "Extension.TooManyExtensions"


INTERNAL_EXTENSION = '''
import json, os, threading, urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"
events = []

def _register():
    request = urllib.request.Request(f"{API}/register", data=b'{"events":["INVOKE"]}',
                                     headers={"Lambda-Extension-Name": "recorder"})
    with urllib.request.urlopen(request) as response:
        return response.headers["Lambda-Extension-Identifier"], json.loads(response.read())

IDENTIFIER, REGISTERED = _register()

def _loop():
    while True:
        request = urllib.request.Request(f"{API}/event/next", headers={"Lambda-Extension-Identifier": IDENTIFIER})
        with urllib.request.urlopen(request) as response:
            events.append(json.loads(response.read()))

threading.Thread(target=_loop, daemon=True).start()

def handler(event, context):
    return {"registered": REGISTERED, "seen": [e["requestId"] for e in events], "me": context.aws_request_id}
'''


async def test_an_internal_extension_receives_each_invocation(tmp_path):
    write_function(tmp_path, INTERNAL_EXTENSION)
    async with running_server(awslambdaric_function("ext", tmp_path)) as server:
        first = json.loads((await server.invoke("ext")).payload)
        second = json.loads((await server.invoke("ext")).payload)
        assert len(server.functions["ext"].environments) == 1
    assert first["registered"] == {"functionName": "ext", "functionVersion": "$LATEST", "handler": "app.handler"}
    # The extension had the INVOKE event of each invocation (by the second, the first's for sure).
    assert first["me"] in second["seen"]
