def handler(event, context):
    return "slash path"
