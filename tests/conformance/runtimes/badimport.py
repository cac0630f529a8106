import nonexistent_module_xyz  # noqa: F401


def handler(event, context):
    return event
