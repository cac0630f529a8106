"""lambdalet's host side: the Lambda Runtime API and Invoke API servers, dispatch, platform logs.

Embedding, for trio programs::

    from runtime_api import FunctionConfig, Server, ServerConfig

    async with Server(ServerConfig(port=0, function=[FunctionConfig(name="fn", code="src")])) as server:
        result = await server.invoke("fn", b'{"x": 1}', log_type="Tail")

and for everyone else (asyncio hosts, scripts, pytest fixtures), the same calls from a thread::

    from runtime_api import LambdaletThread

    with LambdaletThread(ServerConfig(port=0, function=[...])) as lambdalet:
        result = lambdalet.invoke("fn", b'{"x": 1}')
"""

import importlib

# Where each public name lives. Imported on first use (PEP 562), so that `lambdalet-rie`, which
# needs none of them, does not pay for msgspec, pyelftools and the Invoke API at start-up.
_EXPORTS = {
    "FunctionConfig": "config", "ServerConfig": "config", "load_config": "config",
    "LambdaletThread": "embed", "ServiceError": "invoke_api",
    "InvokeResult": "server", "Server": "server", "serve": "server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime_api' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
