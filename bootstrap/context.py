"""LambdaContext: the second argument of every handler, with awslambdaric's attributes, methods and
repr."""

import time

W3C_FIELDS = ("traceparent", "tracestate", "baggage")


class FunctionInfo:
    """The function's identity from the environment (read once at start-up)."""

    __slots__ = ("function_name", "function_version", "memory_limit_in_mb", "log_group_name",
                 "log_stream_name")

    def __init__(self, function_name=None, function_version=None, memory_limit_in_mb=None,
                 log_group_name=None, log_stream_name=None):
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name

    @classmethod
    def from_environ(cls, environ):
        return cls(environ.get("AWS_LAMBDA_FUNCTION_NAME"),
                   environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
                   environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                   environ.get("AWS_LAMBDA_LOG_GROUP_NAME"),
                   environ.get("AWS_LAMBDA_LOG_STREAM_NAME"))


class LambdaContext:
    def __init__(self, invoke_id, client_context, cognito_identity, epoch_deadline_time_in_ms,
                 invoked_function_arn=None, tenant_id=None, function=None, log=None):
        """`client_context` and `cognito_identity` are the parsed header JSON (or None)."""
        function = function or _NO_FUNCTION
        self.aws_request_id = invoke_id
        self.log_group_name = function.log_group_name
        self.log_stream_name = function.log_stream_name
        self.function_name = function.function_name
        self.memory_limit_in_mb = function.memory_limit_in_mb
        self.function_version = function.function_version
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self._w3c_fields = _pop_w3c(client_context)
        self.client_context = None
        if client_context is not None:
            self.client_context = _from_dict(ClientContext, client_context)
            if self.client_context.client is not None:
                self.client_context.client = _from_dict(Client, self.client_context.client)
        identity = CognitoIdentity()
        cognito_identity = cognito_identity if cognito_identity is not None else {}
        identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
        identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self.identity = identity
        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms
        self._log = log

    def get_remaining_time_in_millis(self):
        remaining = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def w3c(self):
        """The W3C trace context (traceparent, tracestate, baggage) the caller sent, as a new dict."""
        return dict(self._w3c_fields)

    def log(self, msg):
        """Write `msg` to the function's log as is (no newline added)."""
        if self._log is not None:
            self._log(msg)
        else:
            import sys
            sys.stdout.write(str(msg))

    def __repr__(self):
        return (f"{self.__class__.__name__}(["
                f"aws_request_id={self.aws_request_id},"
                f"log_group_name={self.log_group_name},"
                f"log_stream_name={self.log_stream_name},"
                f"function_name={self.function_name},"
                f"memory_limit_in_mb={self.memory_limit_in_mb},"
                f"function_version={self.function_version},"
                f"invoked_function_arn={self.invoked_function_arn},"
                f"client_context={self.client_context},"
                f"identity={self.identity},"
                f"tenant_id={self.tenant_id}"
                "])")


_NO_FUNCTION = FunctionInfo()


def _pop_w3c(client_context):
    # The w3c key is taken out of the client context (it never shows in context.client_context).
    if not isinstance(client_context, dict) or "w3c" not in client_context:
        return {}
    raw = client_context.pop("w3c")
    if not isinstance(raw, dict):
        return {}
    return {key: raw[key] for key in W3C_FIELDS if isinstance(raw.get(key), str)}


def _from_dict(cls, values):
    if values is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, values.get(field, None))
    return obj


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __repr__(self):
        return (f"{self.__class__.__name__}(["
                f"cognito_identity_id={self.cognito_identity_id},"
                f"cognito_identity_pool_id={self.cognito_identity_pool_id}"
                "])")


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code",
                 "app_package_name")

    def __repr__(self):
        return (f"{self.__class__.__name__}(["
                f"installation_id={self.installation_id},"
                f"app_title={self.app_title},"
                f"app_version_name={self.app_version_name},"
                f"app_version_code={self.app_version_code},"
                f"app_package_name={self.app_package_name}"
                "])")


class ClientContext:
    __slots__ = ("custom", "env", "client")

    def __repr__(self):
        return (f"{self.__class__.__name__}(["
                f"custom={self.custom},"
                f"env={self.env},"
                f"client={self.client}"
                "])")
