"""Small building blocks for tests: function directories, captured logs, running servers."""

from __future__ import annotations

import io
import socket
import sys
import textwrap
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from runtime_api import FunctionConfig, LambdaletThread, Server, ServerConfig
from runtime_api.logs import LogSink

PYTHON = sys.executable
AWSLAMBDARIC = [PYTHON, "-m", "awslambdaric"]


def write_function(directory: Path, source: str, module: str = "app") -> Path:
    """A function directory holding `module.py` with the given (dedented) source."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(textwrap.dedent(source))
    return directory


class CapturedLog(LogSink):
    """A LogSink that keeps what the server printed, for assertions."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        super().__init__(self.buffer)

    @property
    def text(self) -> str:
        return self.buffer.getvalue().decode(errors="replace")


def awslambdaric_function(name: str, code: Path, handler: str = "app.handler", **settings) -> FunctionConfig:
    return FunctionConfig(name=name, code=str(code), handler=handler, runtime=[*AWSLAMBDARIC, handler], **settings)


@asynccontextmanager
async def running_server(*functions: FunctionConfig, sink: LogSink | None = None):
    async with Server(ServerConfig(port=0, function=list(functions)), sink=sink or CapturedLog()) as server:
        yield server


@contextmanager
def threaded_server(*functions: FunctionConfig, sink: LogSink | None = None):
    with LambdaletThread(ServerConfig(port=0, function=list(functions)), sink=sink or CapturedLog()) as handle:
        yield handle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
