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

from .config import FunctionConfig, ServerConfig, load_config
from .embed import LambdaletThread
from .invoke_api import ServiceError
from .server import InvokeResult, Server, serve

__all__ = [
    "FunctionConfig", "InvokeResult", "LambdaletThread", "Server", "ServerConfig", "ServiceError",
    "load_config", "serve",
]
