import json
import os


def lambda_handler(event, context):
    name = event.get("name", "world")
    print(f"greeting {name}")
    return {
        "statusCode": 200,
        "body": json.dumps({"message": f"{os.environ['GREETING']}, {name}!",
                            "function": context.function_name}),
    }
