"""Embedding lambdalet in a program that is not a trio program (a script, an asyncio host, a pytest
fixture): the thread-backed handle offers the same calls, and its endpoint serves boto3.

    python examples/embed_thread.py
"""

import json
import tempfile
from pathlib import Path

from runtime_api import FunctionConfig, LambdaletThread, ServerConfig

HANDLER = '''
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"greeting": f"hello {event['name']}"}
'''

with tempfile.TemporaryDirectory() as code:
    Path(code, "app.py").write_text(HANDLER)
    config = ServerConfig(port=0, function=[FunctionConfig(name="greeter", code=code, handler="app.handler")])
    with LambdaletThread(config) as lambdalet:
        ok = lambdalet.invoke("greeter", json.dumps({"name": "thread"}).encode())
        # One string per print: the server's thread writes the platform's lines to the same stdout.
        print(f"payload: {ok.payload.decode()}", flush=True)
        failed = lambdalet.invoke("greeter", b'{"fail": true}')
        print(f"function error: {failed.function_error} {json.loads(failed.payload)['errorType']}", flush=True)

        try:
            import boto3
        except ImportError:
            boto3 = None
        if boto3 is not None:
            client = boto3.client("lambda", endpoint_url=lambdalet.endpoint, region_name="us-east-1",
                                  aws_access_key_id="x", aws_secret_access_key="x")
            response = client.invoke(FunctionName="greeter", Payload=json.dumps({"name": "boto3"}))
            print(f"boto3: {response['StatusCode']} {response['Payload'].read().decode()}", flush=True)
