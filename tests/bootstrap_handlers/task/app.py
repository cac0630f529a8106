"""Handlers for the bootstrap's differential tests: each is one scenario."""
import decimal
import logging
import os
import sys
import time

print("module-level print at import")


def echo(event, context):
    return event


def ret_list(event, context):
    return [1, "two", None, True, 2.5]


def ret_str(event, context):
    return "plain string"


def ret_int(event, context):
    return 42


def ret_float(event, context):
    return 0.1


def ret_none(event, context):
    return None


def ret_decimal(event, context):
    return {"d": decimal.Decimal("1.10"), "nan": decimal.Decimal("NaN"), "f": float("inf")}


def ret_bytes(event, context):
    return b"\x00\x01binary"


def ret_non_ascii(event, context):
    return {"price": "£1.00", "emoji": "😀", "text": "héllo"}


def ret_big(event, context):
    return {"big": "y" * 5000, "n": list(range(300))}


def raise_value(event, context):
    return _inner(event.get("x") if isinstance(event, dict) else None)


def _inner(x):
    raise ValueError(f"bad value: {x}")


class CustomError(Exception):
    pass


def raise_custom_empty(event, context):
    raise CustomError()


def raise_nested(event, context):
    try:
        {}["missing"]
    except KeyError as e:
        raise RuntimeError("outer\nwith two lines") from e


def unserialisable(event, context):
    return {"s": {1, 2}}


def sleep(event, context):
    time.sleep(event.get("seconds", 5))
    return "woke"


def exit3(event, context):
    sys.exit(3)


def context_info(event, context):
    cc = context.client_context
    return {
        "request_id_len": len(context.aws_request_id),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining_positive": context.get_remaining_time_in_millis() > 0,
        "custom": cc.custom if cc else None,
        "env": cc.env if cc else None,
        "client": repr(cc.client) if cc else None,
        "identity": repr(context.identity),
        "tenant": context.tenant_id,
        "w3c": context.w3c(),
        "trace_env": os.environ.get("_X_AMZN_TRACE_ID"),
        "repr_starts": repr(context).split("aws_request_id=")[0],
    }


def log_lines(event, context):
    print("printed line")
    sys.stderr.write("stderr line\n")
    root = logging.getLogger()
    root.warning("warn %s", 1)
    logging.getLogger("child").error("child error", extra={"k": "v"})
    root.info("info is dropped at the default WARNING level")
    root.critical({"a": "dict message"})
    context.log("context.log line\n")
    try:
        1 / 0
    except ZeroDivisionError:
        root.exception("caught it")
    return "logged"


def dispatch(event, context):
    """Call the handler named by event["call"] with event["arg"] (one RIE run, many results)."""
    return globals()[event["call"]](event.get("arg"), context)


def stream(event, context):
    yield "part1-"
    yield b"part2-"
    yield "part3"


def too_large(event, context):
    return "x" * (6 * 1024 * 1024 + 200)


def import_inside(event, context):
    import module_that_does_not_exist_abc  # noqa: F401


def telemetry_env(event, context):
    return "_LAMBDA_TELEMETRY_LOG_FD" in os.environ


def huge_error(event, context):
    raise ValueError("m" * (1024 * 1024))
