import logging

logging.getLogger(__name__).warning("warning at import")
HANDLERS = [type(h).__name__ for h in logging.getLogger().handlers]


def handler(event, context):
    return HANDLERS
