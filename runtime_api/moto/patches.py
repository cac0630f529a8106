"""`install()`: moto's Lambda invocations run through lambdalet (runtime_api/moto/integration.py)
instead of Docker, until `uninstall()`.

moto runs a function in one method, `LambdaFunction._invoke_lambda(event) -> (payload, errored,
log tail)`, which every invocation it makes reaches: `invoke` (RequestResponse, Event, LogType
Tail), S3, SNS and SQS notifications, event source mappings, EventBridge targets. `install()`
stands behind that method for every function lambdalet has a runtime for; container images and the
other runtimes keep moto's own path. Around it, moto's own methods are wrapped where Lambda differs:
`LambdaFunction.invoke` (a DryRun runs nothing, as on Lambda; a function error is `Unhandled`, as
Lambda reports it today, not moto's `Handled`); `LambdaFunction.__init__`, `update_configuration`
and `get_configuration` (moto neither keeps nor reports SnapStart; the wrappers record it and report
it as Lambda does); `LambdaBackend.send_sqs_batch` (one invocation per batch, as Lambda's SQS event
source mapping delivers it, instead of moto's one per message).
"""

from __future__ import annotations

import atexit
import hashlib
import json

from .. import logs
from .deployment import Options, served_by_lambdalet
from .integration import Integration

_installed: Integration | None = None
_originals: dict[str, object] = {}


def _function_class():
    from moto.awslambda.models import LambdaFunction

    return LambdaFunction


def _backend_class():
    from moto.awslambda.models import LambdaBackend

    return LambdaBackend


# moto's methods the integration stands behind or wraps (their owner, their name).
_WRAPPED = ((_function_class, "_invoke_lambda"), (_function_class, "invoke"), (_function_class, "__init__"),
            (_function_class, "update_configuration"), (_function_class, "get_configuration"),
            (_backend_class, "send_sqs_batch"))
_REPLACEMENTS = {}  # name -> this module's function, filled below the functions


def install(*, snapstart: bool = False, endpoint: str | None = None, allow_other_python: bool = True,
            isolation: str | None = None, idle_timeout: float = 300.0,
            sink: logs.LogSink | None = None) -> Integration:
    """Run moto's Lambda functions through lambdalet from now on (until `uninstall()`, or the end of
    the process). `snapstart`: every function restored from a SnapStart template, whether configured
    or not. `endpoint`: where the functions' SDK calls go, instead of the moto server found. `sink`:
    where the functions' log lines go (default: stdout, as `lambdalet serve` writes them). Calling
    it again replaces the settings (the servers started so far are stopped)."""
    global _installed
    missing = [name for owner, name in _WRAPPED if not callable(getattr(owner(), name, None))]
    if missing:
        from moto import __version__

        raise RuntimeError(f"moto {__version__} has no {', '.join(missing)}: lambdalet's moto integration is made "
                           "for moto 5.2 (pip install 'lambdalet[moto]')")
    uninstall()
    integration = Integration(Options(snapstart=snapstart, allow_other_python=allow_other_python,
                                      isolation=isolation, idle_timeout=idle_timeout), endpoint, sink)
    for owner, name in _WRAPPED:
        _originals[name] = getattr(owner(), name)
        setattr(owner(), name, _REPLACEMENTS[name])
    _installed = integration
    return integration


def uninstall() -> None:
    """moto's own behaviour again; every lambdalet server (and the moto server it started) stopped."""
    global _installed
    integration, _installed = _installed, None
    if _originals:
        for owner, name in _WRAPPED:
            setattr(owner(), name, _originals.pop(name))
    if integration is not None:
        integration.close()


def installed() -> Integration | None:
    return _installed


atexit.register(uninstall)  # a daemon thread's runtimes would outlive the process otherwise


def _invoke_lambda(self, event=None):
    integration = _installed
    if integration is None or not served_by_lambdalet(self):
        return _originals["_invoke_lambda"](self, event)
    return integration.invoke(self, event)


def _invoke(self, body, request_headers, response_headers):
    if _installed is None or not served_by_lambdalet(self):
        return _originals["invoke"](self, body, request_headers, response_headers)
    if _header(request_headers, "x-amz-invocation-type") == "DryRun":
        return b""  # Lambda checks the request and runs nothing
    payload = _originals["invoke"](self, body, request_headers, response_headers)
    if "x-amz-function-error" in response_headers:
        response_headers["x-amz-function-error"] = "Unhandled"
    return payload


def _header(headers, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _init(self, account_id, spec, region, version=1):
    _originals["__init__"](self, account_id, spec, region, version)
    self.lambdalet_snapstart = spec.get("SnapStart")


def _update_configuration(self, config_updates):
    if "SnapStart" in config_updates:
        self.lambdalet_snapstart = config_updates["SnapStart"]
    return _originals["update_configuration"](self, config_updates)


def _get_configuration(self, on_create: bool = False):
    configuration = _originals["get_configuration"](self, on_create)
    setting = getattr(self, "lambdalet_snapstart", None)
    if setting:  # as Lambda reports it (moto reports SnapStart off whatever it was given)
        on = setting.get("ApplyOn") == "PublishedVersions"
        configuration["SnapStart"] = {"ApplyOn": setting.get("ApplyOn", "None"),
                                      "OptimizationStatus": "On" if on else "Off"}
    return configuration


def _send_sqs_batch(self, function_arn: str, messages, queue_arn: str) -> bool:
    """One invocation with every message of the batch as a record, as Lambda's SQS event source
    mapping invokes (the record as the Lambda Developer Guide's "Using Lambda with Amazon SQS" shows
    it); the batch fails or succeeds as a whole."""
    if not messages:
        return True
    records = [_sqs_record(message, queue_arn, self.region_name) for message in messages]
    response_headers: dict[str, str] = {}
    self.invoke(function_name=function_arn, qualifier=None, body=json.dumps({"Records": records}), headers={},
                response_headers=response_headers)
    return "x-amz-function-error" not in response_headers


def _sqs_record(message, queue_arn: str, region: str) -> dict:
    attributes = {
        "ApproximateReceiveCount": str(max(message.approximate_receive_count, 1)),
        "SentTimestamp": str(message.sent_timestamp or 0),
        "SenderId": str(message.sender_id),
        "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp or 0),
    }
    if queue_arn.endswith(".fifo"):
        attributes.update(MessageGroupId=message.group_id, MessageDeduplicationId=message.deduplication_id)
    return {
        "messageId": message.id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(message.body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


_REPLACEMENTS.update({
    "_invoke_lambda": _invoke_lambda, "invoke": _invoke, "__init__": _init,
    "update_configuration": _update_configuration, "get_configuration": _get_configuration,
    "send_sqs_batch": _send_sqs_batch,
})
