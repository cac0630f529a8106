import sys


def handler(event, context):
    import logging  # first imported during an invocation

    logging.getLogger("late").warning("late warning %s", context.aws_request_id)
    return [type(h).__name__ for h in logging.getLogger().handlers]


def logging_loaded(event, context):
    return "logging" in sys.modules
