"""The Extensions API: Go's JSON error texts, init and invocation gating in the protocol, and an
internal extension living in a function's runtime, end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from helpers import awslambdaric_function, running_server, write_function
from runtime_api import protocol as p
from runtime_api.extensions import Extensions, go_json_error


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


def registered(extensions: Extensions, name: str = "ext", events=("INVOKE",)):
    return extensions.register(name, json.dumps({"events": list(events)}).encode()).extension


def test_init_waits_for_every_extension_and_closes_registration():
    extensions = Extensions("fn", "$LATEST", "app.handler")
    proto = p.EnvironmentProtocol(extensions)
    ext = registered(extensions)
    inv = Inv("id-1")
    proto.handle(p.InvocationArrived(inv))
    assert proto.handle(p.NextRequested()) == [p.PARK]  # the runtime is ready, the extension not yet
    assert proto.extension_next(ext) == [p.InitDone(), p.Wake(), p.PARK]
    assert proto.handle(p.NextRequested()) == [p.WakeExtensions(), p.Deliver(inv)]
    assert proto.extension_next(ext, woken=True) == [p.DeliverExtensionEvent(ext, inv)]
    refused = extensions.register("late", b'{"events":["INVOKE"]}')
    assert json.loads(refused.body)["errorType"] == "Extension.RegistrationClosed"


def test_the_environment_is_idle_only_when_the_runtime_and_invoke_extensions_asked_again():
    extensions = Extensions("fn", "$LATEST", "app.handler")
    proto = p.EnvironmentProtocol(extensions)
    ext = registered(extensions)
    proto.extension_next(ext)
    proto.handle(p.NextRequested())
    inv = Inv("id-1")
    proto.handle(p.InvocationArrived(inv))
    proto.handle(p.NextRequested())
    proto.extension_next(ext, woken=True)
    proto.handle(p.ErrorPosted("id-1", b"{}", None, None))
    assert proto.handle(p.NextRequested()) == [p.PARK]
    assert not proto.idle
    assert proto.extension_next(ext) == [p.CycleDone(), p.Wake(), p.PARK]
    assert proto.idle


def test_an_extension_that_exits_no_longer_holds_the_environment():
    extensions = Extensions("fn", "$LATEST", "")
    proto = p.EnvironmentProtocol(extensions)
    ext = registered(extensions)
    proto.handle(p.NextRequested())
    assert proto.extension_exited(ext) == [p.ACCEPTED, p.InitDone(), p.Wake()]
    (refused,) = proto.extension_next(ext)
    assert json.loads(refused.body)["errorType"] == "Extension.InvalidExtensionState"


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
    extensions = Extensions("fn", "$LATEST", "")
    for i in range(10):
        registered(extensions, f"e{i}")
    assert json.loads(extensions.register("e10", b"{}").body)["errorType"] == "Extension.TooManyExtensions"


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
