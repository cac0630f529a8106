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

An environment with external extensions (executables of /opt/extensions) starts them first, in
its confinement (a launcher's `Place`), and its runtime once they have registered. It ends as
Lambda's Shutdown phase does (`stop`): the SHUTDOWN event to its extensions with a deadline
`SHUTDOWN_SECONDS` ahead and SIGTERM to its runtime, then SIGKILL to whatever is left at that
deadline; the reason is `spindown` (reaped when idle, or the server stopping), `timeout` or
`failure` (its runtime or an extension ended, or an extension failed).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from sandbox import reaper
from sandbox.cgroups import EnvironmentCgroup
from sandbox.hostlimits import HostLimitReached
from sandbox.layers import ExtensionFile
from sandbox import netns
from sandbox.process import OutputPipe, RuntimeProcess, RuntimeSpec, reap

from . import logs
from .extensions import Extensions
from .invocation import Invocation
from .telemetry import Event as TelemetryEvent
from .telemetry import Telemetry, timestamp
from .telemetry_delivery import deliver
from .launcher import Launch, Launcher, LaunchFailed, Listening, Place
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
    ExtensionExited,
    ExtensionNextRequested,
    ExtensionsRegistered,
    InitDone,
    InvocationArrived,
    Kill,
    Park,
    ReadBody,
    Registered,
    Reply,
    ResponseAborted,
    RestoreDone,
    RestoreStarted,
    RuntimeExited,
    RuntimeFinished,
    RuntimeState,
    Settle,
    ShutdownStarted,
    Start,
    Subscribed,
    Wake,
    WakeExtensions,
)
from .runtime_routes import RuntimeAPI

log = logging.getLogger("lambdalet")

# Lambda's limit for a restore: the runtime loaded and its after-restore hooks run, within 10 s.
RESTORE_TIMEOUT = 10.0
# Lambda's Shutdown phase for a function with external extensions: 2,000 ms, then SIGKILL.
SHUTDOWN_SECONDS = 2.0
# What Lambda keeps from external extensions of the runtime's variables (AWS Lambda Developer
# Guide, "Lambda Extensions API", Permissions and configuration).
RUNTIME_ONLY_VARIABLES = frozenset({
    "AWS_EXECUTION_ENV", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS", "LAMBDA_RUNTIME_DIR", "LAMBDA_TASK_ROOT", "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT", "_HANDLER",
})


def extension_spec(extension: ExtensionFile, runtime: RuntimeSpec) -> RuntimeSpec:
    """An external extension's command: its file, with the runtime's variables but those Lambda
    keeps for the runtime, in the runtime's working directory."""
    env = {key: value for key, value in runtime.env.items() if key not in RUNTIME_ONLY_VARIABLES}
    return RuntimeSpec((extension.path,), env, runtime.cwd)


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
    extensions: tuple[ExtensionFile, ...] = ()  # external extensions, started before the runtime
    account_id: str = ""  # told to an extension that accepts the accountId feature


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
        self.extensions = Extensions(options.function_name, options.version, options.handler,
                                     external=tuple(extension.name for extension in options.extensions),
                                     account_id=options.account_id)
        self.telemetry = Telemetry()
        self.proto = EnvironmentProtocol(self.extensions, start=Start.STAGED if staged else launcher.start,
                                         endpoints=options.endpoints, debugging=options.debugging,
                                         telemetry=self.telemetry)
        self.platform = PlatformLog(options.log_style, options.version, options.memory_mb,
                                    provisioned=options.provisioned, json_log=options.json_log,
                                    function_name=options.function_name)
        self._telemetry_changed = trio.Event()
        self._lines: dict[str, bytes] = {}  # the unfinished last line of each output, for telemetry
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
        self._launched = False
        # External extensions: their processes by name, the place they run in, when they all
        # registered (or the environment failed first), the Shutdown phase.
        self.extension_processes: dict[str, RuntimeProcess] = {}
        self._extension_outputs: dict[str, OutputPipe] = {}
        self._place: Place | None = None
        self._registered = trio.Event()
        self._stopping = False
        self._stopped = trio.Event()
        self._deferred_report: tuple[Invocation, float] | None = None  # reported when its cycle ends
        self._runtime_finished_at: float | None = None
        self._cycle_done = trio.Event()

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
            self._cycle_done.set()

    async def _accept(self) -> None:
        """Serve the runtime's connections until `_accepting` is cancelled (a listener that was
        handed over stays open for the environment after this one)."""
        with self._accepting:
            await RuntimeAPI(self).accept(self._listening.listeners, self._nursery)

    async def launch(self) -> None:
        """Start the runtime (after the external extensions, if any). Raises LaunchFailed if it
        cannot be started at all."""
        assert self._nursery is not None and not self._launched
        self._launched = True
        try:
            if self.options.extensions and not self.staged:
                await self._nursery.start(self._run_with_extensions)
            else:
                await self._nursery.start(self._run_runtime)
        except LaunchFailed:
            self._launched = False  # the next invocation tries again, and says why
            raise

    async def _run_with_extensions(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The extensions first, each in the environment's place; the runtime once they have
        registered; the Shutdown phase once the runtime has ended (or the environment failed)."""
        self.platform.launched(trio.current_time())
        self._publish()
        spec = self._make_spec(self.address)
        self._output = OutputPipe()
        place = self._place = await self._launcher.place(
            Launch(spec, self._output, self._listening), tuple(extension.path for extension in self.options.extensions))
        try:
            for extension in self.options.extensions:
                if not await self._start_extension(place, extension, spec):
                    break
            task_status.started()
            await self._registered.wait()
            if self.proto.state is not RuntimeState.EXITED:
                await self._run_held_runtime(place, spec)
            await self._stop("failure")
        finally:
            with trio.CancelScope(shield=True):
                await place.close()
            self._cancel_scope.cancel()

    async def _start_extension(self, place: Place, extension: ExtensionFile, runtime: RuntimeSpec) -> bool:
        output = OutputPipe()
        try:
            process = await place.start(extension_spec(extension, runtime), output)
        except OSError:
            output.close()
            self._apply(self.proto.handle(ExtensionExited(extension.name, 127)))
            return False
        self.extension_processes[extension.name] = process
        self._extension_outputs[extension.name] = output
        self._nursery.start_soon(self._pump_extension, extension.name, output)
        self._nursery.start_soon(self._watch_extension, extension.name, process)
        return True

    async def _pump_extension(self, name: str, output: OutputPipe) -> None:
        try:
            await output.pump(partial(self._on_extension_output, name))
        finally:
            self._on_extension_output(name, output.drain())  # what it said last, as it ended
            output.close()

    async def _watch_extension(self, name: str, process: RuntimeProcess) -> None:
        status = await process.wait()
        self._apply(self.proto.handle(ExtensionExited(name, status)))

    async def _run_held_runtime(self, place: Place, spec: RuntimeSpec) -> None:
        """The runtime, once every extension registered: until it ends."""
        try:
            process = await place.start(spec, self._output, runtime=True)
        except OSError as exc:
            log.warning("environment %s: the runtime could not be started: %s", self.address, exc)
            self._apply(self.proto.handle(RuntimeExited(127)))
            return
        self.process, self.cgroup, self.pid = process, place.limits.cgroup, process.pid
        self._nursery.start_soon(self._output.pump, self._on_output)
        status = await process.wait()
        self.exit_status = status
        self._flush_report()
        oom = status == -9 and self.cgroup is not None and self.cgroup.new_oom_kill()
        self._apply(self.proto.handle(RuntimeExited(status, oom=oom)))

    async def _stop(self, reason: str) -> None:
        """Lambda's Shutdown phase: SHUTDOWN (with `reason`, and a deadline SHUTDOWN_SECONDS ahead)
        to the extensions subscribed to it and SIGTERM to the runtime; at the deadline whatever is
        left is killed. Then the environment closes."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = self.closing = True
        deadline = trio.current_time() + SHUTDOWN_SECONDS
        self.telemetry.flush()  # what is buffered goes now, while the extensions can take it
        self._apply(self.proto.handle(ShutdownStarted(reason, int((time.time() + SHUTDOWN_SECONDS) * 1000))))
        if self.process is not None:
            self.process.terminate()
        with trio.move_on_at(deadline):
            for process in [*self.extension_processes.values(), *([self.process] if self.process else [])]:
                await process.wait()
        for name, output in self._extension_outputs.items():
            self._on_extension_output(name, output.drain())
        self._stopped.set()
        if self._deferred_report is not None:  # its extensions did not finish the invocation's cycle
            (invocation, ended), self._deferred_report = self._deferred_report, None
            self._report(invocation, ended=ended, post_runtime_ms=self._post_runtime_ms(),
                         status={"timeout": "timeout", "failure": "error"}.get(reason),
                         error_type="Sandbox.Timedout" if reason == "timeout" else None)
        self._flush_report()
        self._cancel_scope.cancel()

    async def _run_runtime(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.platform.launched(trio.current_time())
        self._publish()
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
        """Stop the environment; `run` returns once the runtime's tree is killed and reaped. One
        with external extensions gets its Shutdown phase first (`spindown`)."""
        self.closing = True
        if self.extension_processes and self._nursery is not None and not self._stopping:
            self._nursery.start_soon(self._stop, "spindown")
            return
        self._cancel_scope.cancel()

    async def wait_idle(self) -> None:
        """Returns once the environment can take an invocation (its runtime and INVOKE extensions
        asked for their next event), or is gone."""
        while not self.proto.idle and not self.closed.is_set():
            await self._cycle_done.wait()

    async def stop(self) -> None:
        """`shutdown`, and wait until the environment is gone."""
        self.shutdown()
        await self.closed.wait()

    # -- the invoke side ---------------------------------------------------------------------------

    async def invoke(self, invocation: Invocation) -> Outcome:
        """Run one invocation here; return its outcome once the runtime answered (or failed).

        A streamed outcome's body is relayed by `relay_stream`.
        """
        self._idle_scope.deadline = float("inf")
        self._write(self.platform.arrived(invocation.request_id))
        if not self._launched and not self.staged:
            if self.closing or self._cancel_scope.cancel_called:
                # Stopped just as it was picked (the server is shutting down).
                return self._settle_now(invocation, exit_outcome(invocation.request_id, -9))
            try:
                await self.launch()
            except LaunchFailed as failed:
                return self._settle_now(invocation, failed.outcome_for(invocation.request_id))
            except HostLimitReached:  # refused, not run: the caller gets 429 (sandbox/hostlimits.py)
                self.shutdown()
                raise
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
                invocation.streamed_bytes = size
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
                case ReadBody():
                    self.proto.invocation.response_started_at = trio.current_time()
                    answer = action
                case Reply() | Park():
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
                    self._runtime_done(invocation, OutcomeKind.FUNCTION_ERROR if error else OutcomeKind.SUCCESS,
                                       error.error_type if error else None, invocation.streamed_bytes)
                    invocation.stream_send.close()  # the caller's stream ends, its trailers known
                    self._report(invocation, status="error" if error else None,
                                 error_type=error.error_type if error else None)
                case Registered(name=name, events=events, external=external):
                    if external:
                        self._write(self.platform.extension_registered(trio.current_time(), name, events))
                case ExtensionsRegistered():
                    self._registered.set()
                case Subscribed(name=name):
                    subscriber = self.telemetry.subscribers[name]
                    self._nursery.start_soon(deliver, subscriber, partial(self.telemetry.subscribers.get, name),
                                             lambda: self._telemetry_changed, self._connect_inside)
                case RuntimeFinished():
                    self._runtime_finished_at = trio.current_time()
                case InitDone(snapshot=snapshot):
                    self.initialised_at = trio.current_time()
                    self.telemetry.init_over()
                    self._write(self.platform.init_done(self.initialised_at, snapshot=snapshot))
                    self._initialised.set()
                case RestoreStarted():
                    self.restore_starting()
                case RestoreDone():
                    self._write(self.platform.restore_done(trio.current_time()))
                case CycleDone():
                    if self.cgroup is not None:
                        self.cgroup.track()  # notes what the invocation left running, to reap it once it ends
                    if self._deferred_report is not None:
                        (invocation, ended), self._deferred_report = self._deferred_report, None
                        self._report(invocation, ended=ended, post_runtime_ms=self._post_runtime_ms())
                    self._cycle_done.set()
                    self._cycle_done = trio.Event()
                    self._flush_report()
                    self._current = None
                    self._idle_scope.deadline = trio.current_time() + self.options.idle_timeout
                    self._on_idle(self)
                case DeadlineSuspended(seconds=seconds):
                    log.warning("function %s: invocation %s is past its %.2f s timeout and goes on: deadlines are "
                                "suspended while debugging", self.options.function_name,
                                self.proto.invocation.request_id, seconds)
                case Kill(reason=reason):
                    self._registered.set()  # the runtime is not started (or no longer awaited)
                    if self.options.extensions and self._nursery is not None:
                        # Its extensions get their Shutdown phase; a timed-out runtime goes at once.
                        if self.process is not None and reason == "timeout":
                            self.process.kill_tree()
                        self._nursery.start_soon(self._stop, "timeout" if reason == "timeout" else "failure")
                        continue
                    # Stop accepting at once: what connects from now on is for the next environment
                    # (a handed-over listener keeps it waiting in the backlog).
                    self._accepting.cancel()
                    if self.process is not None:
                        self.process.kill_tree()
                case _:
                    raise AssertionError(f"unknown protocol action {action!r}")
        self._publish()
        return answer

    # -- telemetry ---------------------------------------------------------------------------------

    def _publish(self) -> None:
        """Hand the platform's events to the Telemetry API's subscribers (telemetry.py)."""
        events = self.platform.take_telemetry()
        if events and self.telemetry.listening:
            now, stamp = trio.current_time(), timestamp()
            for kind, record in events:
                self.telemetry.emit(TelemetryEvent(stamp, kind, record), now)
            self._telemetry_changed.set()
            self._telemetry_changed = trio.Event()

    def _log_lines(self, kind: str, source: str, data: bytes) -> None:
        """A process's output, line by line, as `function` or `extension` telemetry events."""
        if not self.telemetry.listening:
            return
        text = self._lines.pop(source, b"") + data
        *lines, rest = text.split(b"\n")
        if rest:
            self._lines[source] = rest
        if not lines:
            return
        now, stamp = trio.current_time(), timestamp()
        for line in lines:
            record: object = line.decode(errors="replace")
            if self.options.json_log is not None and line.startswith(b"{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    pass
            self.telemetry.emit(TelemetryEvent(stamp, kind, record), now)
        self._telemetry_changed.set()
        self._telemetry_changed = trio.Event()

    async def _connect_inside(self, port: int) -> trio.SocketStream:
        """A connection to a listener on the environment's own loopback (in strict's network
        namespace, from a socket made there)."""
        namespace = self.netns
        if namespace is None:
            return await trio.open_tcp_stream("127.0.0.1", port)
        sock = trio.socket.from_stdlib_socket(await trio.to_thread.run_sync(netns.socket_in, namespace.fd))
        try:
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)

    def _deliver(self, invocation: Invocation) -> None:
        if invocation.delivered_at is not None:
            return  # a repeated `next` gets the same event
        if self.cgroup is None or self.cgroup.memory is None:
            if self.process is not None:  # without a memory cgroup's own peak: a sample, in case
                self.process.peak_memory_mb()  # the runtime dies mid-invocation
        if self.cgroup is not None:
            self.cgroup.reap_tracked()  # what earlier invocations orphaned and has ended since
        invocation.deliver()
        self._current = invocation
        line, shown = self.platform.delivered(invocation.request_id, now=invocation.delivered_at,
                                              trace_id=invocation.trace_id)
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
        self._runtime_done(invocation, outcome.kind, outcome.error_type,
                           len(outcome.body) if outcome.kind is OutcomeKind.SUCCESS else None)
        now = trio.current_time()
        settled = self.platform.settled(outcome.kind, outcome.error_type, now=now,
                                        delivered=invocation.delivered_at is not None)
        self._write(settled.lines)
        if settled.report and settled.status is None and self.extensions.holds_cycles() and self.platform.lambda_style:
            # Its extensions work on after the response: END and REPORT once they are done, with
            # how long that took (PostRuntimeExtensionsDuration).
            self._deferred_report = (invocation, now)
            self._runtime_finished_at = None
            self._nursery.start_soon(self._watch_cycle, invocation, self._cycle_done)
        elif settled.report:
            self._report(invocation, status=settled.status, error_type=settled.error_type)

    async def _watch_cycle(self, invocation: Invocation, done: trio.Event) -> None:
        """The invoke phase, the extensions' work after the response included, ends at the
        function's timeout."""
        assert invocation.deadline_scope is not None
        with trio.move_on_at(invocation.deadline_scope.deadline):
            await done.wait()
            return
        self._apply(self.proto.handle(DeadlinePassed(invocation.timeout)))

    def _runtime_done(self, invocation: Invocation, kind: OutcomeKind, error_type: str | None,
                      produced_bytes: int | None) -> None:
        """platform.runtimeDone: how the runtime finished the invocation, and its response's spans."""
        if invocation.delivered_at is None:
            return
        now = trio.current_time()
        status = {OutcomeKind.SUCCESS: "success", OutcomeKind.STREAMING: "success",
                  OutcomeKind.FUNCTION_ERROR: "failure", OutcomeKind.TIMEOUT: "timeout"}.get(kind, "error")
        responded = invocation.response_started_at or now
        wall = time.time()
        spans = [{"name": "responseLatency", "start": timestamp(wall - (now - invocation.delivered_at)),
                  "durationMs": round((responded - invocation.delivered_at) * 1000, 3)},
                 {"name": "responseDuration", "start": timestamp(wall - (now - responded)),
                  "durationMs": round((now - responded) * 1000, 3)}]
        self.platform.runtime_done(invocation.request_id, status=status, error_type=error_type,
                                   duration_ms=(now - invocation.delivered_at) * 1000, produced_bytes=produced_bytes,
                                   spans=spans if status in ("success", "failure") else [],
                                   trace_id=invocation.trace_id)
        self._publish()

    def _post_runtime_ms(self) -> float:
        if self._runtime_finished_at is None:
            return 0.0
        return (trio.current_time() - self._runtime_finished_at) * 1000

    def _report(self, invocation: Invocation, *, status: str | None = None, error_type: str | None = None,
                ended: float | None = None, post_runtime_ms: float | None = None) -> None:
        """END and REPORT for one invocation (after its output, so the tail holds all three): its
        duration ends when it `ended` (now, unless its report waited for its extensions)."""
        if invocation.reported:
            return
        invocation.reported = True
        now = trio.current_time()
        started = invocation.delivered_at if invocation.delivered_at is not None else invocation.arrived
        duration_ms = ((ended if ended is not None else now) - started) * 1000
        if status == "timeout":
            duration_ms = min(duration_ms, invocation.timeout * 1000)
        lines = self.platform.report(invocation.request_id, duration_ms=duration_ms,
                                     max_memory_used_mb=self.peak_memory_mb(), status=status,
                                     error_type=error_type, now=now, post_runtime_ms=post_runtime_ms).encode()
        self._publish()
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
        self._log_lines("function", "", data)

    def _on_extension_output(self, name: str, data: bytes) -> None:
        """An extension's output goes to the function's log, as on Lambda (and to the invocation's
        tail while one runs); to telemetry as `extension` records."""
        if not data:
            return
        self._sink.write(data)
        if self._current is not None:
            self._current.log.append(data)
        self._log_lines("extension", name, data)
