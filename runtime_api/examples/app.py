"""The example function `lambdalet serve` runs when given no function of your own."""

import json
import os


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"greeting {name} from {context.function_name}")
    return {
        "statusCode": 200,
        "body": json.dumps({"message": f"Hello, {name}!", "requestId": context.aws_request_id}),
        "region": os.environ.get("AWS_REGION"),
    }
