"""A real third-party extension, as its publisher ships it through npm: Serverless Inc.'s
OpenTelemetry extension (`@serverless/aws-lambda-otel-extension-dist` 0.1.11, its layer's zip
unpacked as Lambda extracts a layer; benchmarks/realparts.py). In a function's layer it starts,
registers for INVOKE and SHUTDOWN, listens on `sandbox:4243` and subscribes to the Logs API there,
and receives the platform.report of each invocation, while the function's invocations succeed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from helpers import CapturedLog, awslambdaric_function, running_server, write_function

pytestmark = [
    pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                       reason="npm and node are needed to fetch and run the extension"),
    pytest.mark.skipif(os.geteuid() != 0, reason="its layer is shown at /opt, in a mount namespace: root here"),
]


async def test_the_serverless_opentelemetry_extension_receives_what_it_subscribed_to(tmp_path):
    from benchmarks.realparts import otel_extension_layer

    layer = otel_extension_layer()
    code = write_function(tmp_path / "code", '''
def handler(event, context):
    return {"request": context.aws_request_id}
''')
    log = CapturedLog()
    # DO_NOT_WAIT: without its Node.js wrapper in the runtime, it would wait at each INVOKE for data
    # the wrapper sends; DEBUG_SLS_OTEL_LAYER: it says what it receives.
    config = awslambdaric_function("fn", code, layers=[str(layer)], isolation="standard",
                                   env={"DO_NOT_WAIT": "1", "DEBUG_SLS_OTEL_LAYER": "1"})
    async with running_server(config, sink=log) as server:
        results = [await server.invoke("fn")]
        (env,) = server.functions["fn"].environments
        subscriber = env.telemetry.subscribers["otel-extension"]  # subscribed during init
        delivered = []
        subscriber_delivered = subscriber.delivered

        def note():  # each batch its listener accepted (200), as it was sent
            delivered.append(json.loads(subscriber.in_flight))
            subscriber_delivered()

        subscriber.delivered = note
        await env.wait_idle()  # the extension asked for its next event: the invocation's REPORT is out
        results.append(await server.invoke("fn"))
        await env.wait_idle()
    assert all(result.function_error is None for result in results)
    requests = [json.loads(result.payload)["request"] for result in results]
    text = log.text
    assert "EXTENSION\tName: otel-extension\tState: Ready\tEvents: [INVOKE,SHUTDOWN]" in text
    assert "Logs API is not supported" not in text and "subscription failed" not in text
    assert text.count("Processing event:  INVOKE") == 2 and "Processing event:  SHUTDOWN" in text
    # It subscribed to the Logs API (schema 2021-03-18, platform records) at http://sandbox:4243, and
    # its listener accepted every batch: each invocation's platform.report among them.
    assert (subscriber.api, subscriber.schema, subscriber.types) == ("Logs", "2021-03-18", ("platform",))
    assert subscriber.destination.host == "sandbox" and subscriber.destination.port == 4243
    assert subscriber.in_flight is None and not subscriber.deadline() < float("inf")
    reports = {item["record"]["requestId"] for batch in delivered for item in batch if item["type"] == "platform.report"}
    assert set(requests) <= reports
