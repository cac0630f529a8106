"""The Lambda Runtime API wire contract (2018-06-01), shared by both sides.

This is the one place that spells the paths, header names and limits of the Runtime API.
`runtime_api/` (the server) and `bootstrap/` (the client) both import it, so the two cannot drift
apart. It imports nothing: it sits on every cold start's import path.
"""

API_VERSION = "2018-06-01"
PREFIX = f"/{API_VERSION}"

# Paths. `{request_id}` is filled with str.format by the client; the server matches them.
PING = f"{PREFIX}/ping"
INVOCATION_NEXT = f"{PREFIX}/runtime/invocation/next"
INVOCATION_RESPONSE = PREFIX + "/runtime/invocation/{request_id}/response"
INVOCATION_ERROR = PREFIX + "/runtime/invocation/{request_id}/error"
INIT_ERROR = f"{PREFIX}/runtime/init/error"
RESTORE_NEXT = f"{PREFIX}/runtime/restore/next"
RESTORE_ERROR = f"{PREFIX}/runtime/restore/error"

# Headers on the `next` response, in Lambda's canonical casing (some runtimes match them exactly).
REQUEST_ID = "Lambda-Runtime-Aws-Request-Id"
DEADLINE_MS = "Lambda-Runtime-Deadline-Ms"
INVOKED_FUNCTION_ARN = "Lambda-Runtime-Invoked-Function-Arn"
TRACE_ID = "Lambda-Runtime-Trace-Id"
CLIENT_CONTEXT = "Lambda-Runtime-Client-Context"
COGNITO_IDENTITY = "Lambda-Runtime-Cognito-Identity"
TENANT_ID = "Lambda-Runtime-Aws-Tenant-Id"
INVOCATION_ID = "Lambda-Runtime-Invocation-Id"

# Headers (and trailers) the runtime sends with a response or an error.
FUNCTION_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
FUNCTION_ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE = "Lambda-Runtime-Function-Response-Mode"
XRAY_ERROR_CAUSE = "Lambda-Runtime-Function-XRay-Error-Cause"
STREAMING = "streaming"

# Content types with a meaning of their own.
JSON = "application/json"
ERROR_CAUSE_JSON = "application/vnd.aws.lambda.error.cause+json"
HTTP_INTEGRATION_RESPONSE = "application/vnd.awslambda.http-integration-response"
# Between the JSON prelude of an HTTP integration response and its body.
HTTP_INTEGRATION_SEPARATOR = b"\x00" * 8

# 6 MiB + 100 bytes: the largest payload the Runtime API passes either way (RIE observed: 6,291,556
# accepted, 6,291,557 rejected).
MAX_PAYLOAD_BYTES = 6_291_556
