"""Handlers for the real awslambdaric (`python -m awslambdaric app.<handler>`)."""

import sys


def echo(event, context):
    return event


def boom(event, context):
    raise ValueError("bad value")


def bye(event, context):
    sys.exit(3)


def ctx(event, context):
    cc = context.client_context
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "client_context_custom": cc.custom if cc else None,
        "tenant_id": getattr(context, "tenant_id", None),
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id]
        if context.identity else None,
        "remaining_within_timeout": 0 < context.get_remaining_time_in_millis() <= int(event["timeout_ms"]),
    }


def big(event, context):
    return "x" * int(event["n"])
