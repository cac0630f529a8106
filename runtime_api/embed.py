"""The thread-backed embedding handle: lambdalet for programs that are not trio programs (asyncio
hosts, plain scripts, pytest fixtures).

One thread runs `trio.run`; every call crosses over with `trio.from_thread` using the token that
thread published, the one bridge between the threads. No lock is shared with trio tasks.

    with LambdaletThread(ServerConfig(port=0, function=[FunctionConfig(name="fn", code="src")])) as lambdalet:
        print(lambdalet.endpoint)                      # for boto3 or curl
        result = lambdalet.invoke("fn", b'{"x": 1}')   # an InvokeResult
"""

from __future__ import annotations

import threading
from functools import partial

import trio

from . import logs
from .config import FunctionConfig, ServerConfig
from .server import Changes, InvokeResult, Server


class LambdaletThread:
    def __init__(self, config: ServerConfig, *, sink: logs.LogSink | None = None) -> None:
        self.config = config
        self._sink = sink
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._server: Server | None = None
        self._error: BaseException | None = None
        self.front_doors: str | None = None  # the Function URLs' and APIs' plain address, if any

    def start(self) -> LambdaletThread:
        self._thread = threading.Thread(target=self._run, name="lambdalet", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # handed to the starting thread, which re-raises it
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        with trio.CancelScope() as self._scope:
            async with Server(self.config, sink=self._sink) as self._server:
                self._token = trio.lowlevel.current_trio_token()
                self.front_doors = self._server.gateway.endpoint
                self._ready.set()
                await trio.sleep_forever()

    @property
    def server(self) -> Server:
        assert self._server is not None, "LambdaletThread is not started"
        return self._server

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def invoke(self, function_name: str, payload: bytes = b"{}", **options) -> InvokeResult:
        """As `Server.invoke`, called from any thread but lambdalet's own."""
        return trio.from_thread.run(partial(self.server.invoke, function_name, payload, **options), trio_token=self._token)

    def apply(self, configs: list[FunctionConfig]) -> Changes:
        """As `Server.apply`: serve `configs` from now on (an emulator's functions as they change)."""
        return trio.from_thread.run(partial(self.server.apply, configs), trio_token=self._token)

    def close(self) -> None:
        """Stop the server: every environment is shut down and its runtime reaped before it returns."""
        if self._thread is None:
            return
        if self._token is not None and self._scope is not None:
            try:
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join()
        self._thread = None

    def __enter__(self) -> LambdaletThread:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()
