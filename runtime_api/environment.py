"""One execution environment: its own Runtime API listener, its runtime process, its protocol state.

This is the trio shell around `protocol.EnvironmentProtocol` (style anchors H1, H10, T1, T2, T6):
route handlers turn requests into protocol events and carry out the actions that come back; the
environment's nursery owns the listener, every connection, the output pump and the process
supervisor, so cancelling it stops all of them and kills the runtime's process tree.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from bootstrap import wire
from sandbox import host, reaper
from sandbox.cgroups import DEFAULT_PIDS_MAX, EnvironmentCgroup
from sandbox.isolation import Isolation, PrivateFilesystem
from sandbox.process import OutputPipe, RuntimeProcess, RuntimeSpec, launch_runtime, reap

from . import logs, routes
from .http import Connection, Request, serve_connection
from .extensions import Extension, Extensions
from .invocation import Invocation
from .protocol import (
    ACCEPTED,
    PARK,
    CycleDone,
    DeadlinePassed,
    Deliver,
    DeliverExtensionEvent,
    EnvironmentProtocol,
    ErrorPosted,
    InitDone,
    InitErrorPosted,
    InvocationArrived,
    Kill,
    NextRequested,
    Outcome,
    OutcomeKind,
    ReadBody,
    Reply,
    RestoreDone,
    RestoreErrorPosted,
    RestoreNextRequested,
    ResponseFinished,
    ResponseStarted,
    RuntimeExited,
    RuntimeState,
    Settle,
    Wake,
    WakeExtensions,
    api_error,
    error_json,
    exit_outcome,
)

log = logging.getLogger("lambdalet")

_EXTENSION_ROUTES = frozenset({
    routes.Route.EXTENSION_REGISTER, routes.Route.EXTENSION_NEXT,
    routes.Route.EXTENSION_INIT_ERROR, routes.Route.EXTENSION_EXIT_ERROR,
})
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# Lambda's limit for streamed responses (buffered ones have the 6 MB Runtime API limit).
STREAM_LIMIT_BYTES = 20 * 1024 * 1024
_STUB_BODIES = {
    routes.Route.LOGS: b'{"errorMessage":"Logs API is not supported","errorType":"Logs.NotSupported"}\n',
    routes.Route.TELEMETRY: b'{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}\n',
}


@dataclass(frozen=True, slots=True)
class EnvironmentOptions:
    """How an environment presents itself; the same for every environment of a function."""

    function_name: str = "function"
    handler: str = ""
    version: str = "$LATEST"
    memory_mb: int = 128
    log_style: logs.LogStyle = logs.LogStyle.LAMBDA
    init_timeout: float | None = 10.0  # None: the invocation's own deadline covers init (RIE's rule)
    snapstart: bool = False  # mounts the restore routes
    idle_timeout: float = 300.0  # an environment idle this long is shut down
    metadata_token: str = ""  # AWS_LAMBDA_METADATA_TOKEN, checked by the metadata endpoint
    # RIE's --enable-init-caching: the credentials endpoint's answer, and its token.
    container_credentials: bytes | None = None
    credentials_token: str = ""
    availability_zone_id: str = "use1-az1"
    host: str = "127.0.0.1"
    port: int = 0
    # As decided by sandbox.host.isolation. STANDARD: Lambda's limits through cgroups where the
    # host may create them (memory_mb, pids_max), else RLIMIT_DATA, and `filesystem` (the private
    # /tmp and read-only /var/task) where mount namespaces work. NONE: a plain process tree, as
    # RIE runs its runtime.
    isolation: Isolation = Isolation.NONE
    filesystem: PrivateFilesystem | None = None
    # Checks the runtime command before each launch, giving the reason it cannot start (lambdalet
    # serve: sandbox.doctor.entrypoint_problem); lambdalet-rie keeps RIE's exec-error wording.
    entrypoint_check: Callable[..., str | None] | None = None
    pids_max: int = DEFAULT_PIDS_MAX


class Environment:
    """An execution environment. Start it with `await nursery.start(env.run)`; it reports itself
    started once its listener is bound and its runtime launched (init goes on in the background)."""

    def __init__(
        self,
        make_spec: Callable[[str], RuntimeSpec],
        options: EnvironmentOptions,
        sink: logs.LogSink,
        *,
        on_idle: Callable[[Environment], None] = lambda env: None,
        listeners: list[trio.SocketListener] | None = None,
    ) -> None:
        self._make_spec = make_spec
        self.options = options
        self._sink = sink
        self._on_idle = on_idle
        # A listener handed over (lambdalet-rie's fixed address) outlives the environment: the
        # next one serves it, and connections made meanwhile wait in its backlog.
        self._given_listeners = listeners
        self.extensions = Extensions(options.function_name, options.version, options.handler)
        self.proto = EnvironmentProtocol(self.extensions)
        self._extension_parking = trio.lowlevel.ParkingLot()
        self._parking = trio.lowlevel.ParkingLot()
        self._output: OutputPipe | None = None  # the runtime's stdout and stderr, once launched
        self._current: Invocation | None = None  # the invocation runtime output is attributed to
        self._cancel_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()  # around the accept loops
        self._idle_scope = trio.CancelScope()  # its deadline is the reaping time while idle
        self.closing = False
        self.closed = trio.Event()  # set once the runtime is reaped and the listener closed
        self.address = ""
        self.pid: int | None = None
        self.process: RuntimeProcess | None = None
        self.cgroup: EnvironmentCgroup | None = None
        self.spawned_at = 0.0
        self.init_duration_ms: float | None = None
        self._init_reported = False
        self._pending_report = b""  # END and REPORT of the last invocation, until its cycle ends
        self.exit_status: int | None = None

    def __repr__(self) -> str:
        return f"<Environment {self.address} pid={self.pid} {self.proto!r}>"

    def statistics(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "pid": self.pid,
            "state": self.proto.state.name,
            "invocations": self.proto.invocations,
            "init_duration_ms": self.init_duration_ms,
            "exit_status": self.exit_status,
        }

    @property
    def initialised(self) -> bool:
        return self.init_duration_ms is not None

    @property
    def alive(self) -> bool:
        return self.exit_status is None and self.proto.state is not RuntimeState.EXITED

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the environment's Runtime API from now on; the runtime itself is launched by
        `launch` or by the first invocation (RIE's lazy init)."""
        listeners = self._given_listeners or await trio.open_tcp_listeners(self.options.port, host=self.options.host)
        sockname = listeners[0].socket.getsockname()
        self.address = f"{sockname[0]}:{sockname[1]}"
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._accept, listeners)
                    nursery.start_soon(self._reap_when_idle)
                    task_status.started(self)
        finally:
            self._flush_report()
            if self._given_listeners is None:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
            if self._output is not None:
                self._output.close()
            self.closed.set()

    async def launch(self) -> None:
        """Start the runtime. Raises OSError if it cannot be started at all."""
        assert self._nursery is not None and self.process is None
        await self._nursery.start(self._run_runtime)

    async def _run_runtime(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.spawned_at = trio.current_time()
        spec = self._make_spec(self.address)
        if self.options.entrypoint_check is not None:
            problem = self.options.entrypoint_check(spec.argv[0], cwd=spec.cwd, path=spec.env.get("PATH"))
            if problem is not None:
                raise InvalidEntrypoint(problem)
        self._output = OutputPipe()
        rlimit_data_mb = None
        standard = self.options.isolation is not Isolation.NONE
        if standard:
            support = host.support()
            if support.any:
                try:
                    self.cgroup = EnvironmentCgroup(support, memory_mb=self.options.memory_mb,
                                                    pids_max=self.options.pids_max)
                except OSError as exc:
                    log.warning("environment %s runs without cgroups: %s", self.address, exc)
            if self.cgroup is None or self.cgroup.memory is None:
                rlimit_data_mb = self.options.memory_mb
        try:
            try:
                self.process = process = await launch_runtime(
                    spec, self._output, cgroup=self.cgroup, rlimit_data_mb=rlimit_data_mb,
                    filesystem=self.options.filesystem if standard else None)
            except BaseException:
                if self.cgroup is not None:
                    await self.cgroup.terminate()
                raise
            self.pid = process.pid
            try:
                self._nursery.start_soon(self._output.pump, self._on_output)
                task_status.started()
                status = await process.wait()
            finally:
                # On cancellation too: the whole tree is killed, the runtime and its orphans reaped.
                await reap(process)
                with trio.CancelScope(shield=True):
                    await self._end_tree(process)
            self._accepting.cancel()
            self.exit_status = status
            self._flush_report()
            oom = status == -9 and self.cgroup is not None and self.cgroup.new_oom_kill()
            self._apply(self.proto.handle(RuntimeExited(status, oom=oom)))
            # The runtime is gone: close its listener and connections.
            self._cancel_scope.cancel()
        finally:
            if self.cgroup is not None:
                with trio.CancelScope(shield=True):
                    await self.cgroup.remove_when_empty()

    async def _end_tree(self, process: RuntimeProcess) -> None:
        """Once the runtime is reaped: kill what is left of its environment and reap the orphans
        that re-parented to us (their exit status is nobody else's)."""
        if self.cgroup is not None:
            await self.cgroup.terminate()
        else:
            # Without a cgroup the tree is the runtime's session (a setsid escapee is out of reach).
            reaper.reap_orphans(lambda pid: reaper.in_session(pid, process.pid))

    def _kill_tree(self) -> None:
        if self.process is not None:
            self.process.kill_tree()

    def peak_memory_mb(self) -> int | None:
        """The environment's peak memory: its memory cgroup's (every process in it), or else the
        runtime's own sampled high-water mark."""
        if self.cgroup is not None and self.cgroup.memory is not None:
            return self.cgroup.peak_memory_mb()
        return self.process.peak_memory_mb() if self.process is not None else None

    async def _reap_when_idle(self) -> None:
        while True:
            with self._idle_scope:
                await trio.sleep_forever()
            # The deadline passed; an invocation may have taken the environment meanwhile.
            if self.proto.idle:
                self.shutdown()
                return
            self._idle_scope = trio.CancelScope()

    def shutdown(self) -> None:
        """Stop the environment; `run` returns once the runtime's tree is killed and reaped."""
        self.closing = True
        self._cancel_scope.cancel()

    # -- the invoke side ---------------------------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> Outcome:
        """Run one invocation here; return its outcome once the runtime answered (or failed).

        A streamed outcome's body is relayed by `relay_stream`.
        """
        self._idle_scope.deadline = float("inf")
        if self.options.log_style is logs.LogStyle.RIE:
            self._write(logs.start_line(invocation.request_id, self.options.version))
        if self.process is None:
            if self.closing or self._cancel_scope.cancel_called:
                # Stopped just as it was picked (the server is shutting down).
                return self._settle_now(invocation, exit_outcome(invocation.request_id, -9))
            try:
                await self.launch()
            except InvalidEntrypoint as problem:  # doctor's reason, for this invocation and each one after
                return self._settle_now(invocation, _invalid_entrypoint(str(problem), invocation.request_id))
            except OSError as exc:  # RIE's wording: `fork/exec <path>: <reason>`
                reason = (exc.strerror or str(exc)).lower()
                return self._settle_now(invocation, _invalid_entrypoint(f"fork/exec {exc.filename}: {reason}",
                                                                        invocation.request_id))
        with trio.CancelScope(deadline=self._first_deadline(invocation)) as scope:
            invocation.deadline_scope = scope
            self._apply(self.proto.handle(InvocationArrived(invocation)))
            await invocation.settled.wait()
        if not invocation.settled.is_set():
            self._apply(self.proto.handle(DeadlinePassed(invocation.timeout)))
        assert invocation.outcome is not None
        return invocation.outcome

    def _settle_now(self, invocation: Invocation, outcome: Outcome) -> Outcome:
        invocation.settle(outcome)
        self._on_idle(self)
        return outcome

    def _first_deadline(self, invocation: Invocation) -> float:
        if invocation.deadline_ms is not None or self.options.init_timeout is None:
            return invocation.arrived + invocation.timeout
        if not self.initialised:
            return self.spawned_at + self.options.init_timeout
        # Moved to delivery + timeout when the runtime takes the event.
        return trio.current_time() + invocation.timeout

    async def relay_stream(self, invocation: Invocation, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Pass a streamed response to `send` as it arrives, within the invocation's deadline."""
        assert invocation.stream_receive is not None and invocation.deadline_scope is not None
        with trio.CancelScope(deadline=invocation.deadline_scope.deadline) as scope:
            async with invocation.stream_receive as chunks:
                async for chunk in chunks:
                    await send(chunk)
        if scope.cancelled_caught:
            self._apply(self.proto.handle(DeadlinePassed(invocation.timeout)))
            if invocation.stream_error is None:
                invocation.stream_error = _stream_error(
                    "Sandbox.Timedout",
                    f"RequestId: {invocation.request_id} Error: Task timed out after {invocation.timeout:.2f} seconds",
                )
            self._report(invocation, status="timeout", error_type="Sandbox.Timedout")

    # -- carrying out protocol actions -------------------------------------------------------------

    def _apply(self, actions: list[Any]) -> Any:
        """Carry out the host-side actions; return the one that answers the runtime's request."""
        answer = None
        for action in actions:
            match action:
                case Reply() | Deliver() | ReadBody() | DeliverExtensionEvent():
                    answer = action
                case WakeExtensions():
                    self._extension_parking.unpark_all()
                case _ if action is PARK:
                    answer = action
                case Wake():
                    self._parking.unpark_all()
                case Settle(invocation=invocation, outcome=outcome):
                    self._settle(invocation, outcome)
                case InitDone():
                    self.init_duration_ms = (trio.current_time() - self.spawned_at) * 1000
                case RestoreDone():
                    pass
                case CycleDone():
                    if self.cgroup is not None:
                        self.cgroup.track()  # notes what the invocation left running, to reap it once it ends
                    self._flush_report()
                    self._current = None
                    self._idle_scope.deadline = trio.current_time() + self.options.idle_timeout
                    self._on_idle(self)
                case Kill():
                    # Stop accepting at once: what connects from now on is for the next environment
                    # (a handed-over listener keeps it waiting in the backlog).
                    self._accepting.cancel()
                    self._kill_tree()
                case _:
                    raise AssertionError(f"unknown protocol action {action!r}")
        return answer

    def _settle(self, invocation: Invocation, outcome: Outcome) -> None:
        # Output the runtime wrote before it answered is already in the pipe: attribute it first.
        self._drain_output()
        invocation.settle(outcome)
        if outcome.kind is OutcomeKind.STREAMING:
            return  # reported when the stream ends
        style = self.options.log_style
        if outcome.kind is OutcomeKind.TIMEOUT:
            self._report(invocation, status="timeout", error_type=outcome.error_type)
        elif outcome.kind in (OutcomeKind.EXIT_ERROR, OutcomeKind.INIT_ERROR):
            if invocation.delivered_at is None and style is logs.LogStyle.LAMBDA:
                self._write(logs.init_report_line(
                    duration_ms=(trio.current_time() - self.spawned_at) * 1000,
                    phase="init", status="error", error_type=outcome.error_type,
                ))
            if style is logs.LogStyle.LAMBDA:
                self._report(invocation, status="error", error_type=outcome.error_type)
        else:
            self._report(invocation)

    def _report(self, invocation: Invocation, *, status: str | None = None, error_type: str | None = None) -> None:
        """END and REPORT for one invocation (after its output, so the tail holds all three)."""
        now = trio.current_time()
        started = invocation.delivered_at if invocation.delivered_at is not None else invocation.arrived
        duration_ms = (now - started) * 1000
        if status == "timeout":
            duration_ms = min(duration_ms, invocation.timeout * 1000)
        if invocation.reported:
            return
        invocation.reported = True
        init_ms = None
        if not self._init_reported and self.init_duration_ms is not None:
            # Only the environment's first invocation carries its init duration.
            self._init_reported = True
            init_ms = self.init_duration_ms
        peak = self.peak_memory_mb()
        memory = self.options.memory_mb
        lines = (logs.end_line(invocation.request_id) + logs.report_line(
            self.options.log_style,
            invocation.request_id,
            duration_ms=duration_ms,
            memory_mb=memory,
            max_memory_used_mb=min(peak, memory) if peak is not None else memory,
            init_duration_ms=init_ms,
            status=status,
            error_type=error_type,
        )).encode()
        invocation.log.append(lines)
        invocation.log_result = invocation.log.value()  # what X-Amz-Log-Result carries
        # On stdout END and REPORT follow what the runtime prints until it asks for its next event;
        # after a failure no next event comes.
        self._pending_report = lines
        if status is not None or not self.alive:
            self._flush_report()

    def _drain_output(self) -> None:
        if self._output is not None:
            self._on_output(self._output.drain())

    def _flush_report(self) -> None:
        self._drain_output()
        if self._pending_report:
            self._sink.write(self._pending_report)
            self._pending_report = b""

    def _write(self, text: str, invocation: Invocation | None = None) -> None:
        data = text.encode()
        self._sink.write(data)
        if invocation is not None:
            invocation.log.append(data)

    def _on_output(self, data: bytes) -> None:
        if not data:
            return
        self._sink.write(data)
        if self._current is not None:
            self._current.log.append(data)

    def _deliver(self, invocation: Invocation) -> None:
        if invocation.delivered_at is None:
            if self.process is not None:
                self.process.peak_memory_mb()  # a sample, in case the runtime dies mid-invocation
            if self.cgroup is not None:
                self.cgroup.track()  # reaps what earlier invocations orphaned and has ended since
            invocation.deliver()
            self._current = invocation
            if self.options.log_style is logs.LogStyle.LAMBDA:
                self._write(logs.start_line(invocation.request_id, self.options.version), invocation)
            else:
                invocation.log.append(logs.start_line(invocation.request_id, self.options.version).encode())

    # -- the Runtime API ---------------------------------------------------------------------------

    async def _accept(self, listeners: list[trio.SocketListener]) -> None:
        """Accept the runtime's connections (as trio.serve_listeners, but leaving a listener that
        was handed over open for the environment after this one), until `_accepting` is cancelled."""
        with self._accepting:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("Runtime API listener %s: %s; retrying", self.address, exc.strerror)
                await trio.sleep(0.1)  # out of descriptors or memory: give the system a moment
                continue
            self._nursery.start_soon(self._serve_runtime_api, stream)

    async def _serve_runtime_api(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self._route)

    async def _route(self, conn: Connection, request: Request) -> None:
        found = routes.match(request.method, request.path, restore=self.options.snapstart,
                             init_caching=self.options.container_credentials is not None)
        if found is routes.NOT_FOUND:
            await conn.respond(404, routes.NOT_FOUND_BODY, routes.NOT_FOUND_HEADERS)
            return
        if isinstance(found, routes.MethodNotAllowed):
            await conn.respond(405, b"", [("Allow", found.allow)])
            return
        route = found.route
        if route is routes.Route.NEXT:
            await self._next(conn)
        elif route is routes.Route.RESPONSE:
            await self._response(conn, request, found.request_id or "")
        elif route is routes.Route.ERROR:
            body, too_large = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await self._answer(conn, ErrorPosted(
                found.request_id or "", body, request.header(b"content-type"),
                request.header(b"lambda-runtime-function-error-type"), too_large,
            ))
        elif route is routes.Route.INIT_ERROR:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await self._answer(conn, InitErrorPosted(body, request.header(b"lambda-runtime-function-error-type")))
        elif route is routes.Route.RESTORE_NEXT:
            await self._answer(conn, RestoreNextRequested())
        elif route is routes.Route.RESTORE_ERROR:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await self._answer(conn, RestoreErrorPosted(body, request.header(b"lambda-runtime-function-error-type")))
        elif route is routes.Route.METADATA:
            await self._metadata(conn, request)
        elif route is routes.Route.CREDENTIALS:
            await self._credentials(conn, request)
        elif route in _EXTENSION_ROUTES:
            await self._extension_route(conn, request, route)
        elif route is routes.Route.PING:
            await conn.respond(200, b"pong", [("Content-Type", "text/plain; charset=utf-8")])
        else:  # the Logs and Telemetry API stubs answer 202 with an error body, as RIE does
            await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await conn.respond(202, _STUB_BODIES[route], [("Content-Type", wire.JSON)])

    async def _metadata(self, conn: Connection, request: Request) -> None:
        """The execution-environment metadata endpoint (AWS_LAMBDA_METADATA_API), Bearer token only."""
        if request.method != "GET":
            await conn.respond(405, b"Method Not Allowed\n", routes.GO_ERROR_HEADERS)
            return
        if request.header(b"authorization") != f"Bearer {self.options.metadata_token}":
            await conn.respond(401, b"Unauthorized\n", routes.GO_ERROR_HEADERS)
            return
        body = b'{"AvailabilityZoneID":"%s"}' % self.options.availability_zone_id.encode()
        await conn.respond(200, body, [("Content-Type", wire.JSON), ("Cache-Control", "private, max-age=43200, immutable")])

    async def _extension_route(self, conn: Connection, request: Request, route: routes.Route) -> None:
        """The Extensions API: registration, the event long-poll, and the two error reports."""
        body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
        if route is routes.Route.EXTENSION_REGISTER:
            registered = self.extensions.register(request.header(b"lambda-extension-name"), body)
            if isinstance(registered, Reply):
                await _send_reply(conn, registered)
            else:
                await conn.respond(200, registered.body, [
                    ("Content-Type", wire.JSON), ("Lambda-Extension-Identifier", registered.extension.id)])
            return
        extension = self.extensions.identify(request.header(b"lambda-extension-identifier"))
        if isinstance(extension, Reply):
            await _send_reply(conn, extension)
            return
        if route is routes.Route.EXTENSION_NEXT:
            await self._extension_next(conn, extension)
            return
        if request.header(b"lambda-extension-function-error-type") is None:
            await _send_reply(conn, api_error(403, "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found"))
            return
        if route is routes.Route.EXTENSION_EXIT_ERROR:
            await _send_reply(conn, self._apply(self.proto.extension_exited(extension)))
        else:
            await _send_reply(conn, ACCEPTED)

    async def _extension_next(self, conn: Connection, extension: Extension) -> None:
        answer = self._apply(self.proto.extension_next(extension))
        while answer is PARK:
            await self._extension_parking.park()
            answer = self._apply(self.proto.extension_next(extension, woken=True))
        if isinstance(answer, Reply):
            await _send_reply(conn, answer)
            return
        invocation: Invocation = answer.invocation
        event = {"eventType": "INVOKE", "deadlineMs": invocation.deadline_ms, "requestId": invocation.request_id,
                 "invokedFunctionArn": invocation.function_arn,
                 "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id}}
        await conn.respond(200, json.dumps(event, separators=(",", ":")).encode(), [
            ("Content-Type", wire.JSON), ("Lambda-Extension-Event-Identifier", str(uuid.uuid4()))])

    async def _credentials(self, conn: Connection, request: Request) -> None:
        """RIE's container-credentials endpoint (--enable-init-caching): the raw token, after init."""
        if not self.initialised or request.header(b"authorization") != self.options.credentials_token:
            await conn.respond(404, b"cannot get credentials for the provided token\n", routes.GO_ERROR_HEADERS)
            return
        body = self.options.container_credentials or b""
        await conn.respond(200, body, [("Content-Type", "text/plain; charset=utf-8")])  # as Go sniffs it

    async def _answer(self, conn: Connection, event: Any) -> None:
        await _send_reply(conn, self._apply(self.proto.handle(event)))

    async def _next(self, conn: Connection) -> None:
        while True:
            answer = self._apply(self.proto.handle(NextRequested()))
            if answer is not PARK:
                break
            await self._parking.park()
        if isinstance(answer, Deliver):
            invocation: Invocation = answer.invocation
            self._deliver(invocation)
            await conn.respond(200, invocation.payload, invocation.next_headers())
        else:
            await _send_reply(conn, answer)

    async def _response(self, conn: Connection, request: Request, request_id: str) -> None:
        mode = request.header(b"lambda-runtime-function-response-mode")
        answer = self._apply(self.proto.handle(ResponseStarted(request_id, mode)))
        if not isinstance(answer, ReadBody):
            await _send_reply(conn, answer)
            return
        invocation: Invocation = self.proto.invocation
        if answer.streaming:
            too_large = await self._relay_from_runtime(conn, invocation)
            body = None
        else:
            body, too_large = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
        await self._answer(conn, ResponseFinished(request_id, body, too_large))

    async def _relay_from_runtime(self, conn: Connection, invocation: Invocation) -> bool:
        """Pass a streamed response body on to the caller as it arrives; True if it was too large."""
        assert invocation.stream_send is not None
        size = 0
        complete = False
        try:
            async with invocation.stream_send as send:
                async for chunk in conn.body_chunks():
                    size += len(chunk)
                    if size > STREAM_LIMIT_BYTES:
                        continue  # read on, relay no more
                    try:
                        await send.send(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # the caller went away; the runtime still gets its answer
                error_type = conn.request.trailer(b"lambda-runtime-function-error-type") if conn.request else None
                if size > STREAM_LIMIT_BYTES:
                    invocation.stream_error = _stream_error(
                        "Function.ResponseSizeTooLarge",
                        f"Response payload size exceeded maximum allowed payload size ({STREAM_LIMIT_BYTES} bytes).",
                    )
                elif error_type:
                    body = conn.request.trailer(b"lambda-runtime-function-error-body") or ""
                    invocation.stream_error = (error_type, body)
                complete = True
        finally:
            if not complete and invocation.stream_error is None:
                invocation.stream_error = _stream_error(
                    "Runtime.ExitError",
                    f"RequestId: {invocation.request_id} Error: Runtime exited while streaming its response",
                )
            error = invocation.stream_error
            self._report(invocation, status="error" if error else None, error_type=error[0] if error else None)
        return size > STREAM_LIMIT_BYTES


class InvalidEntrypoint(Exception):
    """The runtime command cannot start here; the message is doctor's plain-language reason."""


def _invalid_entrypoint(reason: str, request_id: str) -> Outcome:
    message = f"RequestId: {request_id} Error: {reason}"
    return Outcome(OutcomeKind.EXIT_ERROR, error_json("Runtime.InvalidEntrypoint", message), "Runtime.InvalidEntrypoint")


def _stream_error(error_type: str, message: str) -> tuple[str, str]:
    return error_type, base64.b64encode(error_json(error_type, message)).decode()


async def _send_reply(conn: Connection, reply: Reply) -> None:
    headers = [("Content-Type", reply.content_type)] if reply.content_type else []
    await conn.respond(reply.status, reply.body, headers)
