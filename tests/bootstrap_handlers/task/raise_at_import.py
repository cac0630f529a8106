def helper():
    raise RuntimeError("boom at import")


helper()


def handler(event, context):
    return 1
