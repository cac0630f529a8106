"""Embedding lambdalet in a trio program: run a function and invoke it, no HTTP needed.

    python examples/embed_trio.py
"""

import json
import sys
import tempfile
from pathlib import Path

import trio

from runtime_api import FunctionConfig, Server, ServerConfig

HANDLER = '''
def handler(event, context):
    print("adding", event)
    return {"sum": event["a"] + event["b"]}
'''


async def main() -> None:
    with tempfile.TemporaryDirectory() as code:
        Path(code, "app.py").write_text(HANDLER)
        config = ServerConfig(port=0, function=[FunctionConfig(name="adder", code=code, handler="app.handler")])
        async with Server(config) as server:
            print("Invoke API for other clients:", server.endpoint, file=sys.stderr)
            result = await server.invoke("adder", json.dumps({"a": 2, "b": 3}).encode(), log_type="Tail")
            print("payload:", result.payload.decode())
            print("function error:", result.function_error)
            print("log tail:", result.log_tail.splitlines()[1])


if __name__ == "__main__":
    trio.run(main)
