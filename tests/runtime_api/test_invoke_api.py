"""runtime_api.invoke_api: the Invoke API's decisions, without a server. Which function and
qualifier a request names (a name, a partial or a full ARN, URL-encoded or not, ?Qualifier=), its
invocation and log types, the client context, the payload, the result's headers, and the service
errors with the status and error type boto3 maps to its exceptions."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime_api.http import Request
from runtime_api.invoke_api import (
    CLIENT_CONTEXT_LIMIT,
    INVOKE_PATH,
    STREAM_INVOKE_PATH,
    ServiceError,
    check_payload,
    decode_client_context,
    is_streaming,
    not_found,
    parse_invoke_request,
    restore_failed,
    result_headers,
    too_many_requests,
)
from runtime_api.outcomes import Outcome, OutcomeKind

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"


def request(query: str = "", **headers: str) -> Request:
    """A POST to the Invoke API with `headers` (x_amz_log_type= is X-Amz-Log-Type)."""
    return Request(method="POST", path="/2015-03-31/functions/fn/invocations", query=query,
                   headers=[(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()],
                   http_version=b"1.1")


def service_error(call) -> ServiceError:
    with pytest.raises(ServiceError) as raised:
        call()
    return raised.value


# --- which function ------------------------------------------------------------------------

@pytest.mark.parametrize("named, name, qualifier", [
    ("fn", "fn", None),
    ("my_Function-2", "my_Function-2", None),
    ("fn:prod", "fn", "prod"),
    ("fn:$LATEST", "fn", "$LATEST"),
    ("fn%3A7", "fn", "7"),  # as boto3 sends a qualified name: the colon URL-encoded
    ("123456789012:function:fn", "fn", None),
    ("123456789012:function:fn:prod", "fn", "prod"),
    (ARN, "fn", None),
    (f"{ARN}:7", "fn", "7"),
    (ARN.replace(":", "%3A"), "fn", None),
    ("arn:aws-cn:lambda:cn-north-1:123456789012:function:fn", "fn", None),
    ("a" * 64, "a" * 64, None),
])
def test_a_function_is_named_by_name_partial_arn_or_arn(named, name, qualifier):
    found = parse_invoke_request(request(), named)
    assert (found.function_name, found.qualifier) == (name, qualifier)


@pytest.mark.parametrize("named", [
    "a" * 65,
    "bad name",
    "fn:",
    "fn:prod:extra",
    "fn:qu@lifier",
    "12345:function:fn",  # an account id has 12 digits
    "arn:aws:lambda:us-east-1:123456789012:layer:fn",
    "arn:aws:s3:us-east-1:123456789012:function:fn",
    "fn%2Fother",
])
def test_an_invalid_function_name_is_a_validation_error_quoting_it(named):
    error = service_error(lambda: parse_invoke_request(request(), named))
    assert (error.status, error.error_type) == (400, "ValidationException")
    shown = named.replace("%2F", "/")
    assert error.message == (f"1 validation error detected: Value '{shown}' at 'functionName' failed to satisfy "
                             "constraint: Member must satisfy regular expression pattern")


@given(name=st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True),
       qualifier=st.none() | st.just("$LATEST") | st.from_regex(r"[a-zA-Z0-9_-]{1,128}", fullmatch=True))
def test_every_form_of_a_valid_name_names_the_same_function(name, qualifier):
    suffix = f":{qualifier}" if qualifier else ""
    for form in (name, f"123456789012:function:{name}", f"arn:aws:lambda:eu-west-1:123456789012:function:{name}"):
        found = parse_invoke_request(request(), form + suffix)
        assert (found.function_name, found.qualifier) == (name, qualifier)


def test_the_qualifier_parameter_names_the_version():
    assert parse_invoke_request(request("Qualifier=7"), "fn").qualifier == "7"
    assert parse_invoke_request(request("Qualifier=7"), "fn:7").qualifier == "7"  # saying it twice agrees


def test_a_qualifier_parameter_that_contradicts_the_name_is_refused():
    error = service_error(lambda: parse_invoke_request(request("Qualifier=8"), "fn:7"))
    assert (error.status, error.error_type) == (400, "InvalidParameterValueException")
    assert error.message == "The derived qualifier from the function name does not match the specified qualifier."


# --- how ----------------------------------------------------------------------------------

def test_by_default_an_invocation_is_synchronous_with_no_log_and_no_context():
    found = parse_invoke_request(request(), "fn")
    assert (found.invocation_type, found.log_type, found.client_context, found.trace_id, found.tenant_id) == (
        "RequestResponse", None, None, None, None)


@pytest.mark.parametrize("kind", ["RequestResponse", "Event", "DryRun"])
def test_the_three_invocation_types(kind):
    assert parse_invoke_request(request(x_amz_invocation_type=kind), "fn").invocation_type == kind


@pytest.mark.parametrize("headers, message", [
    ({"x_amz_invocation_type": "Async"}, "Unsupported invocation type Async"),
    ({"x_amz_invocation_type": "event"}, "Unsupported invocation type event"),
    ({"x_amz_log_type": "Full"}, "Unsupported log type Full"),
])
def test_an_unknown_invocation_or_log_type_is_refused(headers, message):
    error = service_error(lambda: parse_invoke_request(request(**headers), "fn"))
    assert (error.status, error.error_type, error.message) == (400, "InvalidParameterValueException", message)


@pytest.mark.parametrize("log_type", ["Tail", "None"])
def test_the_log_types(log_type):
    assert parse_invoke_request(request(x_amz_log_type=log_type), "fn").log_type == log_type


def test_the_trace_id_tenant_and_client_context_reach_the_invocation():
    context = base64.b64encode(b'{"custom": {"k": "v"}}').decode()
    found = parse_invoke_request(request(x_amzn_trace_id="Root=1-5e1b4151-5ac6c58f1a2b3c4d5e6f7a8b",
                                         x_amz_tenant_id="tenant-1", x_amz_client_context=context), "fn")
    assert found.trace_id == "Root=1-5e1b4151-5ac6c58f1a2b3c4d5e6f7a8b"
    assert found.tenant_id == "tenant-1"
    assert found.client_context == '{"custom": {"k": "v"}}'


# --- the client context --------------------------------------------------------------------

def test_the_client_context_is_decoded_from_base64():
    assert decode_client_context(None) is None
    text = json.dumps({"client": {"installation_id": "i-1"}, "custom": {"a": "é"}})
    assert decode_client_context(base64.b64encode(text.encode()).decode()) == text


def _context_of_length(length: int) -> str:
    """Base64 of a JSON object, `length` characters long (a multiple of 4)."""
    text = '{"k": "' + "x" * (length // 4 * 3 - 9) + '"}'
    encoded = base64.b64encode(text.encode()).decode()
    assert len(encoded) == length
    return encoded


def test_the_client_context_may_be_as_long_as_lambdas_limit_and_no_longer():
    longest = _context_of_length(CLIENT_CONTEXT_LIMIT // 4 * 4)
    assert json.loads(decode_client_context(longest))["k"]
    error = service_error(lambda: decode_client_context(_context_of_length(CLIENT_CONTEXT_LIMIT // 4 * 4 + 4)))
    assert (error.status, error.error_type) == (400, "InvalidParameterValueException")
    assert error.message == f"Client context must be no longer than {CLIENT_CONTEXT_LIMIT} bytes"


@pytest.mark.parametrize("value", [
    "not base64!",
    "e30",  # base64 without its padding
    base64.b64encode(b"\xff\xfe").decode(),  # not UTF-8
    base64.b64encode(b"not json").decode(),
    base64.b64encode(b'{"unterminated": ').decode(),
])
def test_a_client_context_that_is_not_base64_json_is_refused(value):
    error = service_error(lambda: decode_client_context(value))
    assert (error.status, error.error_type) == (400, "InvalidParameterValueException")
    assert error.message == "Client context must be a valid Base64-encoded JSON object."


# --- the payload ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b'{"a": [1, 2]}', b"3", b'"text"', b"[]", b"null", b' {"spaced": true} \n'])
def test_any_json_document_is_a_payload_passed_through_unchanged(payload):
    assert check_payload(payload, False, 100) is payload


@pytest.mark.parametrize("payload", [b"", b"  \r\n\t"])
def test_an_empty_payload_is_an_empty_object(payload):
    assert check_payload(payload, False, 100) == b"{}"


@pytest.mark.parametrize("payload", [b"{", b"not json", b"{'single': 'quotes'}", b"\xff"])
def test_a_payload_that_is_not_json_is_invalid_request_content(payload):
    error = service_error(lambda: check_payload(payload, False, 100))
    assert (error.status, error.error_type) == (400, "InvalidRequestContentException")
    assert error.message.startswith("Could not parse request body into json: ")


def test_a_payload_over_the_limit_is_too_large_whatever_it_holds():
    error = service_error(lambda: check_payload(b"{}", True, 6291456))
    assert (error.status, error.error_type) == (413, "RequestTooLargeException")
    assert error.message == "Request must be smaller than 6291456 bytes for the InvokeFunction operation"


# --- the answer ----------------------------------------------------------------------------

def test_a_result_names_its_request_and_version():
    assert result_headers("rid", "$LATEST", Outcome(OutcomeKind.SUCCESS, b"{}"), None) == [
        ("Content-Type", "application/json"), ("X-Amzn-RequestId", "rid"), ("X-Amz-Executed-Version", "$LATEST")]


@pytest.mark.parametrize("kind", [kind for kind in OutcomeKind if kind not in (OutcomeKind.SUCCESS, OutcomeKind.STREAMING)])
def test_every_failed_outcome_is_an_unhandled_function_error(kind):
    headers = dict(result_headers("rid", "3", Outcome(kind, b"{}", "Runtime.ExitError"), None))
    assert headers["X-Amz-Function-Error"] == "Unhandled"
    assert headers["X-Amz-Executed-Version"] == "3"


@pytest.mark.parametrize("kind", [OutcomeKind.SUCCESS, OutcomeKind.STREAMING])
def test_a_successful_outcome_has_no_function_error(kind):
    assert "X-Amz-Function-Error" not in dict(result_headers("rid", "3", Outcome(kind), None))


def test_the_log_tail_is_sent_in_base64():
    headers = dict(result_headers("rid", "$LATEST", Outcome(OutcomeKind.SUCCESS), b"START RequestId: rid\n"))
    assert base64.b64decode(headers["X-Amz-Log-Result"]) == b"START RequestId: rid\n"


def test_only_a_streaming_outcome_is_relayed_as_a_stream():
    assert [kind for kind in OutcomeKind if is_streaming(Outcome(kind))] == [OutcomeKind.STREAMING]


# --- service errors ------------------------------------------------------------------------

def test_a_service_error_body_is_what_boto3_reads():
    error = ServiceError(400, "InvalidParameterValueException", "bad", Extra="more")
    assert json.loads(error.body()) == {"Type": "User", "message": "bad", "Extra": "more"}
    assert str(error) == "bad"


def test_an_unknown_function_is_resource_not_found_naming_its_arn():
    error = not_found(f"{ARN}:7")
    assert (error.status, error.error_type) == (404, "ResourceNotFoundException")
    assert json.loads(error.body())["message"] == f"Function not found: {ARN}:7"


def test_past_the_concurrency_limit_lambda_says_which_limit():
    error = too_many_requests()
    assert (error.status, error.error_type) == (429, "TooManyRequestsException")
    assert json.loads(error.body()) == {"Type": "User", "message": "Rate Exceeded.",
                                        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}


def test_a_failed_restore_is_a_snapstart_service_error():
    hook = restore_failed(Outcome(OutcomeKind.RESTORE_ERROR, b"{}", "Runtime.Unknown"))
    assert (hook.status, hook.error_type, hook.message) == (
        400, "SnapStartException",
        "The afterRestore() runtime hook encountered an error. For more information, check the Amazon "
        "CloudWatch logs.")
    late = restore_failed(Outcome(OutcomeKind.RESTORE_TIMEOUT, b"{}", "Sandbox.Timedout"))
    assert (late.status, late.error_type, late.message) == (
        408, "SnapStartTimeoutException", "Lambda couldn't restore the snapshot within the timeout limit.")


@pytest.mark.parametrize("kind", [kind for kind in OutcomeKind
                                  if kind not in (OutcomeKind.RESTORE_ERROR, OutcomeKind.RESTORE_TIMEOUT)])
def test_any_other_outcome_is_answered_by_the_function_itself(kind):
    assert restore_failed(Outcome(kind, b"{}")) is None


# --- the paths -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, pattern, name", [
    ("/2015-03-31/functions/fn/invocations", INVOKE_PATH, "fn"),
    (f"/2015-03-31/functions/{ARN.replace(':', '%3A')}/invocations", INVOKE_PATH, ARN.replace(":", "%3A")),
    ("/2021-11-15/functions/fn/response-streaming-invocations", STREAM_INVOKE_PATH, "fn"),
])
def test_the_invoke_paths_carry_the_function_name(path, pattern, name):
    assert pattern.match(path)["name"] == name


@pytest.mark.parametrize("path", ["/2015-03-31/functions/fn/invocations/", "/2015-03-31/functions//invocations",
                                  "/2015-03-31/functions/a/b/invocations", "/2015-03-31/functions/fn/invoke"])
def test_other_paths_are_not_invocations(path):
    assert INVOKE_PATH.match(path) is None and STREAM_INVOKE_PATH.match(path) is None
