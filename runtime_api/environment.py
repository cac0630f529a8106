"""One execution environment: its own Runtime API listener, its runtime process, its protocol state.

This is the trio shell around `protocol.EnvironmentProtocol`, which never touches a socket or a clock.
Its public face has two sides:

* the invoke side: `invoke` an invocation and get its outcome, `relay_stream` a streamed one;
* the Runtime API side, for the route handlers (runtime_routes.py), which only translate HTTP:
  `runtime_request(event)` hands a protocol event in and returns the answer (waiting while the
  protocol parks the request), and `relay_response` passes a streamed response body through.

In between it carries out the protocol's actions: settling callers, waking parked requests, the
platform's log lines (platform_log.py), the deadlines. Its nursery owns the listener, every
connection, the output pump and the process supervisor, so cancelling it stops all of them and
kills the runtime's process tree. How the runtime comes to exist is its launcher's business
(launcher.py: exec a command, or restore a SnapStart copy).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from sandbox import reaper
from sandbox.cgroups import EnvironmentCgroup
from sandbox.process import OutputPipe, RuntimeProcess, RuntimeSpec, reap

from . import logs
from .extensions import Extensions
from .invocation import Invocation
from .launcher import Launch, Launcher, LaunchFailed, Listening
from .outcomes import Outcome, OutcomeKind, StreamError, exit_outcome
from .platform_log import JsonLog, LogStyle, PlatformLog
from .protocol import (
    PARK,
    Action,
    Answer,
    CycleDone,
    DeadlinePassed,
    DeadlineSuspended,
    Deliver,
    EndStream,
    Endpoints,
    EnvironmentProtocol,
    Event,
    ExtensionNextRequested,
    InitDone,
    InvocationArrived,
    Kill,
    Park,
    ReadBody,
    Reply,
    ResponseAborted,
    RestoreDone,
    RestoreStarted,
    RuntimeExited,
    RuntimeState,
    Settle,
    Start,
    Wake,
    WakeExtensions,
)
from .runtime_routes import RuntimeAPI

log = logging.getLogger("lambdalet")

# Lambda's limit for a restore: the runtime loaded and its after-restore hooks run, within 10 s.
RESTORE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class EnvironmentOptions:
    """How an environment presents itself; the same for every environment of a function."""

    function_name: str = "function"
    handler: str = ""
    version: str = "$LATEST"
    memory_mb: int = 128
    log_style: LogStyle = LogStyle.LAMBDA
    init_timeout: float | None = 10.0  # None: the invocation's own deadline covers init (RIE's rule)
    snapstart: bool = False  # SnapStart's contract: the restore routes, restore/next answered after init
    provisioned: bool = False  # initialised ahead of demand: its REPORT lines carry no Init Duration
    idle_timeout: float = 300.0  # an environment idle this long is shut down
    endpoints: Endpoints = Endpoints()  # what the metadata and credentials endpoints check and answer
    host: str = "127.0.0.1"
    port: int = 0
    json_log: JsonLog | None = None  # the platform's lines in Lambda's JSON log format (LoggingConfig)
    debugging: bool = False  # a debugger may hold the runtime: deadlines are suspended (protocol.py)


class Environment:
    """An execution environment. Start it with `await nursery.start(env.run)`; it reports itself
    started once its listener is bound (the runtime is launched by `launch`, or by the first
    invocation: RIE's lazy init)."""

    def __init__(
        self,
        make_spec: Callable[[str], RuntimeSpec],
        options: EnvironmentOptions,
        sink: logs.LogSink,
        launcher: Launcher,
        *,
        on_idle: Callable[[Environment], None] = lambda env: None,
        listeners: list[trio.SocketListener] | None = None,
        staged: bool = False,
    ) -> None:
        self._make_spec = make_spec
        self.options = options
        self._sink = sink
        self._launcher = launcher
        self._on_idle = on_idle
        # A listener handed over (lambdalet-rie's fixed address) outlives the environment: the
        # next one serves it, and connections made meanwhile wait in its backlog.
        self._given_listeners = listeners
        self.extensions = Extensions(options.function_name, options.version, options.handler)
        self.proto = EnvironmentProtocol(self.extensions, start=Start.STAGED if staged else launcher.start,
                                         endpoints=options.endpoints, debugging=options.debugging)
        self.platform = PlatformLog(options.log_style, options.version, options.memory_mb,
                                    provisioned=options.provisioned, json_log=options.json_log)
        self._extension_parking = trio.lowlevel.ParkingLot()
        self._parking = trio.lowlevel.ParkingLot()
        self._listening: Listening | None = None
        self._output: OutputPipe | None = None  # the runtime's stdout and stderr, once launched
        self._current: Invocation | None = None  # the invocation runtime output is attributed to
        self._cancel_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()  # around the accept loops
        self._idle_scope = trio.CancelScope()  # its deadline is the reaping time while idle
        self._initialised = trio.Event()
        self.initialised_at: float | None = None  # when InitDone came (trio's clock)
        self.closing = False
        self.closed = trio.Event()  # set once the runtime is reaped and the listener closed
        self.address = ""
        self.pid: int | None = None
        self.process: RuntimeProcess | None = None
        self.cgroup: EnvironmentCgroup | None = None
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
            "init_duration_ms": self.platform.init_duration_ms,
            "exit_status": self.exit_status,
        }

    @property
    def initialised(self) -> bool:
        return self.proto.initialised

    async def wait_initialised(self) -> None:
        """Returns once the runtime is past init (its first `next`, or its restore/next)."""
        await self._initialised.wait()

    @property
    def alive(self) -> bool:
        return self.exit_status is None and self.proto.state is not RuntimeState.EXITED

    def runtime_exited(self) -> bool:
        """Whether the runtime is known to the kernel to have exited (before `alive` says so)."""
        return self.process is not None and self.process.exited()

    @property
    def staged(self) -> bool:
        """A SnapStart copy restored as far as it goes ahead of demand, and not yet wanted."""
        return self.proto.staged

    @property
    def init_error(self) -> tuple[bytes, str] | None:
        """(body, error type) the runtime posted to init/error or restore/error, if it did."""
        return self.proto.init_error

    @property
    def netns(self):
        """Strict's network namespace holding the Runtime API listener (None elsewhere)."""
        return self._listening.namespace if self._listening is not None else None

    @property
    def optional_routes(self) -> tuple[bool, bool]:
        """Which optional Runtime API routes it serves: (SnapStart's restore routes, RIE's credentials)."""
        return self.options.snapstart, self.options.endpoints.credentials is not None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the environment's Runtime API from now on."""
        if self._given_listeners is not None:
            self._listening = Listening(self._given_listeners)
        else:
            self._listening = await self._launcher.listen(self.options.host, self.options.port)
        self.address = self._listening.address
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._accept)
                    nursery.start_soon(self._reap_when_idle)
                    task_status.started(self)
        finally:
            self._flush_report()
            if self._given_listeners is None:
                # Shielded: cancelled (the server stopping), the checkpoint in aclose would raise
                # and skip the rest of this clean-up (the namespace, the output pipe, `closed`).
                with trio.CancelScope(shield=True):
                    for listener in self._listening.listeners:
                        await trio.aclose_forcefully(listener)
                self._listening.close()
            if self._output is not None:
                self._output.close()
            self.closed.set()

    async def _accept(self) -> None:
        """Serve the runtime's connections until `_accepting` is cancelled (a listener that was
        handed over stays open for the environment after this one)."""
        with self._accepting:
            await RuntimeAPI(self).accept(self._listening.listeners, self._nursery)

    async def launch(self) -> None:
        """Start the runtime. Raises LaunchFailed if it cannot be started at all."""
        assert self._nursery is not None and self.process is None
        await self._nursery.start(self._run_runtime)

    async def _run_runtime(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.platform.launched(trio.current_time())
        self._output = OutputPipe()
        process = await self._launcher.launch(Launch(
            self._make_spec(self.address), self._output, self._listening, staged=self.staged,
            restore_starting=self.restore_starting))
        self.process, self.cgroup, self.pid = process, process.cgroup, process.pid
        try:
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
            reaper.end_session(process.pid)

    def restore_starting(self) -> None:
        """The runtime's restore begins: a SnapStart copy is being made for this environment (its
        launcher calls this), a staged one is wanted, or (the contract) init reached its snapshot
        point. A waiting invocation's deadline becomes the restore's."""
        now = trio.current_time()
        self._write(self.platform.restore_started(now, copy=self.proto.start is not Start.INIT))
        waiting = self.proto.invocation
        if waiting is not None and waiting.deadline_scope is not None:
            waiting.deadline_scope.deadline = now + RESTORE_TIMEOUT

    def template_ready(self) -> None:
        """This environment is a SnapStart template, and its runtime parked after init."""
        self._write(self.platform.template_ready(trio.current_time()))

    def template_failed(self, error_type: str) -> None:
        """This environment is a SnapStart template, and its init failed."""
        self._write(self.platform.template_failed(trio.current_time(), error_type))

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
        self._write(self.platform.arrived(invocation.request_id))
        if self.process is None and not self.staged:
            if self.closing or self._cancel_scope.cancel_called:
                # Stopped just as it was picked (the server is shutting down).
                return self._settle_now(invocation, exit_outcome(invocation.request_id, -9))
            try:
                await self.launch()
            except LaunchFailed as failed:
                return self._settle_now(invocation, failed.outcome_for(invocation.request_id))
        with trio.CancelScope(deadline=self._first_deadline(invocation)) as scope:
            invocation.deadline_scope = scope
            self._apply(self.proto.handle(InvocationArrived(invocation)))
            await invocation.settled.wait()
        if not invocation.settled.is_set():
            self._apply(self.proto.handle(DeadlinePassed(invocation.timeout)))
            await invocation.settled.wait()  # at once, unless the protocol suspended the deadline
        assert invocation.outcome is not None
        return invocation.outcome

    def _settle_now(self, invocation: Invocation, outcome: Outcome) -> Outcome:
        invocation.settle(outcome)
        self._on_idle(self)
        return outcome

    def _first_deadline(self, invocation: Invocation) -> float:
        """Until the runtime takes the event, the deadline is init's or the restore's; `deliver`
        moves it to delivery + timeout."""
        now = trio.current_time()
        if invocation.deadline_ms is not None or self.options.init_timeout is None:
            return invocation.arrived + invocation.timeout
        if self.staged:
            return now + RESTORE_TIMEOUT  # its restore starts with this invocation
        if self.platform.restoring:
            return self.platform.restore_started_at + RESTORE_TIMEOUT
        if not self.initialised:
            return self.platform.launched_at + self.options.init_timeout
        return now + invocation.timeout

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
                invocation.stream_error = StreamError.of(
                    "Sandbox.Timedout",
                    f"RequestId: {invocation.request_id} Error: Task timed out after {invocation.timeout:.2f} seconds",
                )
            self._report(invocation, status="timeout", error_type="Sandbox.Timedout")

    async def collect_stream(self, invocation: Invocation) -> bytes:
        """A streamed response whole, for callers that take it so (its error, if any, is on the invocation)."""
        parts: list[bytes] = []

        async def collect(chunk: bytes) -> None:
            parts.append(chunk)

        await self.relay_stream(invocation, collect)
        return b"".join(parts)

    # -- the Runtime API side (runtime_routes.py) ---------------------------------------------------

    async def runtime_request(self, event: Event) -> Answer:
        """Hand a runtime's (or an extension's) request to the protocol; its answer, once it has
        one (a parked request waits here until woken)."""
        answer = self._apply(self.proto.handle(event))
        while answer is PARK:
            lot = self._extension_parking if isinstance(event, ExtensionNextRequested) else self._parking
            await lot.park()
            answer = self._apply(self.proto.handle(event, woken=True))
        assert answer is not None, f"no answer to {event!r}"
        return answer

    async def relay_response(self, request_id: str, chunks: AsyncIterator[bytes], limit: int) -> bool:
        """Pass a streamed response body from the runtime on to the waiting caller as it arrives,
        no more than `limit` bytes of it (the rest is read and dropped). Whether it went over.
        The caller's stream stays open until the protocol ends it (`ResponseFinished`, with the
        trailers, or `ResponseAborted` if the body breaks off here)."""
        invocation: Invocation = self.proto.invocation
        assert invocation.stream_send is not None
        size = 0
        complete = False
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    continue  # read on, relay no more
                try:
                    await invocation.stream_send.send(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the caller went away; the runtime still gets its answer
            complete = True
        finally:
            if not complete:  # the runtime went away mid-stream (or the environment is stopping)
                self._apply(self.proto.handle(ResponseAborted(request_id)))
        return size > limit

    # -- carrying out protocol actions -------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> Answer | None:
        """Carry out the host-side actions; return the one that answers the pending request."""
        answer: Answer | None = None
        for action in actions:
            match action:
                case Reply() | ReadBody() | Park():
                    answer = action
                case Deliver(invocation=invocation):
                    self._deliver(invocation)
                    answer = action
                case Wake():
                    self._parking.unpark_all()
                case WakeExtensions():
                    self._extension_parking.unpark_all()
                case Settle(invocation=invocation, outcome=outcome):
                    self._settle(invocation, outcome)
                case EndStream(invocation=invocation, error=error):
                    if invocation.stream_error is None:
                        invocation.stream_error = error
                    error = invocation.stream_error
                    invocation.stream_send.close()  # the caller's stream ends, its trailers known
                    self._report(invocation, status="error" if error else None,
                                 error_type=error.error_type if error else None)
                case InitDone(snapshot=snapshot):
                    self.initialised_at = trio.current_time()
                    self._write(self.platform.init_done(self.initialised_at, snapshot=snapshot))
                    self._initialised.set()
                case RestoreStarted():
                    self.restore_starting()
                case RestoreDone():
                    self._write(self.platform.restore_done(trio.current_time()))
                case CycleDone():
                    if self.cgroup is not None:
                        self.cgroup.track()  # notes what the invocation left running, to reap it once it ends
                    self._flush_report()
                    self._current = None
                    self._idle_scope.deadline = trio.current_time() + self.options.idle_timeout
                    self._on_idle(self)
                case DeadlineSuspended(seconds=seconds):
                    log.warning("function %s: invocation %s is past its %.2f s timeout and goes on: deadlines are "
                                "suspended while debugging", self.options.function_name,
                                self.proto.invocation.request_id, seconds)
                case Kill():
                    # Stop accepting at once: what connects from now on is for the next environment
                    # (a handed-over listener keeps it waiting in the backlog).
                    self._accepting.cancel()
                    if self.process is not None:
                        self.process.kill_tree()
                case _:
                    raise AssertionError(f"unknown protocol action {action!r}")
        return answer

    def _deliver(self, invocation: Invocation) -> None:
        if invocation.delivered_at is not None:
            return  # a repeated `next` gets the same event
        if self.process is not None:
            self.process.peak_memory_mb()  # a sample, in case the runtime dies mid-invocation
        if self.cgroup is not None:
            self.cgroup.track()  # reaps what earlier invocations orphaned and has ended since
        invocation.deliver()
        self._current = invocation
        line, shown = self.platform.delivered(invocation.request_id, now=invocation.delivered_at)
        if shown and line:
            self._sink.write(line.encode())
        invocation.log.append(line.encode())

    def _settle(self, invocation: Invocation, outcome: Outcome) -> None:
        # What the invocation left running is noted before its caller hears back, so a daemon that
        # ends soon after is still known, and reaped, when the next invocation starts.
        if self.cgroup is not None:
            self.cgroup.track()
        # Output the runtime wrote before it answered is already in the pipe: attribute it first.
        self._drain_output()
        invocation.settle(outcome)
        if outcome.kind is OutcomeKind.STREAMING:
            return  # reported when the stream ends
        settled = self.platform.settled(outcome.kind, outcome.error_type, now=trio.current_time(),
                                        delivered=invocation.delivered_at is not None)
        self._write(settled.lines)
        if settled.report:
            self._report(invocation, status=settled.status, error_type=settled.error_type)

    def _report(self, invocation: Invocation, *, status: str | None = None, error_type: str | None = None) -> None:
        """END and REPORT for one invocation (after its output, so the tail holds all three)."""
        if invocation.reported:
            return
        invocation.reported = True
        now = trio.current_time()
        started = invocation.delivered_at if invocation.delivered_at is not None else invocation.arrived
        duration_ms = (now - started) * 1000
        if status == "timeout":
            duration_ms = min(duration_ms, invocation.timeout * 1000)
        lines = self.platform.report(invocation.request_id, duration_ms=duration_ms,
                                     max_memory_used_mb=self.peak_memory_mb(), status=status,
                                     error_type=error_type, now=now).encode()
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

    def _write(self, text: str) -> None:
        if text:
            self._sink.write(text.encode())

    def _on_output(self, data: bytes) -> None:
        if not data:
            return
        self._sink.write(data)
        if self._current is not None:
            self._current.log.append(data)
