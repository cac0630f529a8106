"""One execution environment: its own Runtime API listener, its runtime process, its protocol state.

This is the trio shell around `protocol.EnvironmentProtocol` (style anchors H1, H10, T1, T2, T6):
the Runtime API's handlers (runtime_routes.py) turn requests into protocol events, and the
environment carries out the actions that come back; its nursery owns the listener, every
connection, the output pump and the process supervisor, so cancelling it stops all of them and
kills the runtime's process tree.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from sandbox import host, netns, reaper
from sandbox.cgroups import DEFAULT_PIDS_MAX, CpuModel, EnvironmentCgroup, lambda_cpu_quota_us
from sandbox.isolation import Isolation, PrivateFilesystem
from sandbox.process import OutputPipe, RuntimeProcess, RuntimeSpec, launch_runtime, reap
from sandbox.runtime_user import RuntimeUser
from sandbox.strict import StrictExec

from . import logs
from .extensions import Extensions
from .invocation import Invocation, stream_error
from .protocol import (
    PARK,
    CycleDone,
    DeadlinePassed,
    Deliver,
    DeliverExtensionEvent,
    EnvironmentProtocol,
    InitDone,
    InvocationArrived,
    Kill,
    Outcome,
    OutcomeKind,
    ReadBody,
    Reply,
    RestoreDone,
    RuntimeExited,
    RuntimeState,
    Settle,
    Wake,
    WakeExtensions,
    error_json,
    exit_outcome,
)
from .runtime_routes import RuntimeAPI
from .snapstart import TemplateFailed

log = logging.getLogger("lambdalet")

RUNTIME_VERSION = "lambdalet:0.1.0"  # what RESTORE_START names as the runtime version
# Lambda's limit for a restore: the runtime loaded and its after-restore hooks run, within 10 s.
RESTORE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class EnvironmentOptions:
    """How an environment presents itself; the same for every environment of a function."""

    function_name: str = "function"
    handler: str = ""
    version: str = "$LATEST"
    memory_mb: int = 128
    log_style: logs.LogStyle = logs.LogStyle.LAMBDA
    init_timeout: float | None = 10.0  # None: the invocation's own deadline covers init (RIE's rule)
    snapstart: bool = False  # SnapStart's contract: the restore routes, restore/next answered after init
    provisioned: bool = False  # initialised ahead of demand: its REPORT lines carry no Init Duration
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
    # /tmp and read-only /var/task) where mount namespaces work. STRICT: STANDARD, plus what
    # sandbox.host.strict_support found: the Runtime API at 127.0.0.1:9001 in a network namespace
    # of the environment's own, the seccomp deny-list. NONE: a plain process tree, as RIE runs its
    # runtime.
    isolation: Isolation = Isolation.NONE
    filesystem: PrivateFilesystem | None = None
    # Checks the runtime command before each launch, giving the reason it cannot start (lambdalet
    # serve: sandbox.doctor.entrypoint_problem); lambdalet-rie keeps RIE's exec-error wording.
    entrypoint_check: Callable[..., str | None] | None = None
    pids_max: int = DEFAULT_PIDS_MAX
    # SnapStart by fork (runtime_api.snapstart.Template): each environment's runtime is a copy of it.
    template: Any = None
    cpu_model: CpuModel = CpuModel.HOST  # as decided by sandbox.host.cpu_model; LAMBDA: a cpu cgroup
    user: RuntimeUser | None = None  # the runtime's user, if not lambdalet's own (sandbox/runtime_user.py)
    # What a SnapStart template is made of besides the code: the layers (host directories, in
    # Lambda's order) and the function's configuration (config.snapstart_configuration).
    layers: tuple[str, ...] = ()
    function_configuration: bytes = b""


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
        staged: bool = False,
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
        self.netns: netns.NetworkNamespace | None = None  # strict's, holding the Runtime API listener
        self.spawned_at = 0.0
        self.init_duration_ms: float | None = None
        self.restore_duration_ms: float | None = None
        self._restore_started: float | None = None
        self._init_reported = options.provisioned  # Lambda reports no init for provisioned ones
        self._pending_report = b""  # END and REPORT of the last invocation, until its cycle ends
        self.exit_status: int | None = None
        # SnapStart by fork, staged ahead of demand (runtime_api.function): the copy waits in
        # restore/next, where Lambda takes its snapshot, until this is set by the first invocation.
        self.wanted: trio.Event | None = trio.Event() if staged else None
        self.template_build = 0  # a copy's: which build of its function's template it was forked from

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
        listeners = self._given_listeners or await self._open_listeners()
        sockname = listeners[0].socket.getsockname()
        self.address = f"{sockname[0]}:{sockname[1]}"
        try:
            with self._cancel_scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(RuntimeAPI(self).accept, listeners)
                    nursery.start_soon(self._reap_when_idle)
                    task_status.started(self)
        finally:
            self._flush_report()
            if self._given_listeners is None:
                # Shielded: cancelled (the server stopping), the checkpoint in aclose would raise
                # and skip the rest of this clean-up (the namespace, the output pipe, `closed`).
                with trio.CancelScope(shield=True):
                    for listener in listeners:
                        await trio.aclose_forcefully(listener)
            if self.netns is not None:
                self.netns.close()  # the kernel frees the namespace once its last process is gone too
            if self._output is not None:
                self._output.close()
            self.closed.set()

    async def _open_listeners(self) -> list[trio.SocketListener]:
        """The Runtime API's listener: on the host, or (strict) at 127.0.0.1:9001 in a network
        namespace of the environment's own, as on Lambda."""
        if self.options.isolation is Isolation.STRICT and host.strict_support().netns:
            self.netns = await netns.open_namespace()
            return [self.netns.listener]
        return await trio.open_tcp_listeners(self.options.port, host=self.options.host)

    def _strict_exec(self) -> StrictExec | None:
        """Strict's last step before the runtime's exec: join the namespace, load the deny-list."""
        helper = host.strict_support().helper if self.options.isolation is Isolation.STRICT else None
        if helper is None:
            return None
        if self.netns is None:
            return StrictExec(helper)
        return StrictExec(helper, self.netns.fd, self.netns.user_fd if self.netns.user_fd >= 0 else None)

    async def launch(self) -> None:
        """Start the runtime. Raises OSError if it cannot be started at all."""
        assert self._nursery is not None and self.process is None
        await self._nursery.start(self._run_runtime)

    async def _run_runtime(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.spawned_at = trio.current_time()
        spec = self._make_spec(self.address)
        # A forked copy runs no command: its template's was checked.
        if self.options.entrypoint_check is not None and self.options.template is None:
            problem = self.options.entrypoint_check(spec.argv[0], cwd=spec.cwd, path=spec.env.get("PATH"))
            if problem is not None:
                raise InvalidEntrypoint(problem)
        self._output = OutputPipe()
        rlimit_data_mb = None
        standard = self.options.isolation is not Isolation.NONE
        if standard:
            support = host.support()
            cpu_quota_us = (lambda_cpu_quota_us(self.options.memory_mb)
                            if self.options.cpu_model is CpuModel.LAMBDA else None)
            if support.any or cpu_quota_us is not None:
                try:
                    self.cgroup = EnvironmentCgroup(support, memory_mb=self.options.memory_mb,
                                                    pids_max=self.options.pids_max, cpu_quota_us=cpu_quota_us)
                except OSError as exc:
                    log.warning("environment %s runs without cgroups: %s", self.address, exc)
            if self.cgroup is None or self.cgroup.memory is None:
                rlimit_data_mb = self.options.memory_mb
        try:
            try:
                if self.options.template is not None:
                    self.process = process = await self.options.template.restore(self, spec, self._output, self.cgroup)
                else:
                    self.process = process = await launch_runtime(
                        spec, self._output, cgroup=self.cgroup, rlimit_data_mb=rlimit_data_mb,
                        filesystem=self.options.filesystem if standard else None, strict=self._strict_exec(),
                        user=self.options.user)
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
            reaper.end_session(process.pid)

    # -- SnapStart by fork (runtime_api.snapstart) -----------------------------------------------------

    def restore_starting(self) -> None:
        """This environment's runtime is about to be forked from its function's template, or (staged)
        to be let out of restore/next."""
        self.spawned_at = self._restore_started = trio.current_time()
        if self.options.log_style is logs.LogStyle.LAMBDA:
            self._write(logs.restore_start_line(RUNTIME_VERSION))

    @property
    def staged(self) -> bool:
        """Restored as far as it goes ahead of demand, and not yet wanted."""
        return self.wanted is not None and not self.wanted.is_set()

    def _resume(self) -> None:
        """The first invocation of a staged environment: its restore starts now."""
        assert self.wanted is not None
        self.wanted.set()
        self.restore_starting()

    def template_ready(self) -> None:
        """This environment is a template, and its runtime parked after init."""
        self.init_duration_ms = (trio.current_time() - self.spawned_at) * 1000
        self._write(logs.init_report_line(duration_ms=self.init_duration_ms, phase="init", status="success",
                                          error_type=None))

    def template_failed(self, error_type: str) -> None:
        """This environment is a template, and its init failed."""
        self._write(logs.init_report_line(duration_ms=(trio.current_time() - self.spawned_at) * 1000,
                                          phase="init", status="error", error_type=error_type))

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
        if self.staged:
            self._resume()
        elif self.process is None:
            if self.closing or self._cancel_scope.cancel_called:
                # Stopped just as it was picked (the server is shutting down).
                return self._settle_now(invocation, exit_outcome(invocation.request_id, -9))
            try:
                await self.launch()
            except (InvalidEntrypoint, OSError) as exc:
                return self._settle_now(invocation, entrypoint_outcome(exc, invocation.request_id))
            except TemplateFailed as failed:  # SnapStart: no template to restore from
                return self._settle_now(invocation, failed.outcome_for(invocation.request_id))
        with trio.CancelScope(deadline=self._first_deadline(invocation)) as scope:
            invocation.deadline_scope = scope
            self._apply(self.proto.handle(InvocationArrived(invocation)))
            await invocation.settled.wait()
        if not invocation.settled.is_set():
            restoring = self._restore_started is not None and self.restore_duration_ms is None
            self._apply(self.proto.handle(DeadlinePassed(invocation.timeout, restoring=restoring)))
        assert invocation.outcome is not None
        return invocation.outcome

    def _settle_now(self, invocation: Invocation, outcome: Outcome) -> Outcome:
        invocation.settle(outcome)
        self._on_idle(self)
        return outcome

    def _first_deadline(self, invocation: Invocation) -> float:
        if invocation.deadline_ms is not None or self.options.init_timeout is None:
            return invocation.arrived + invocation.timeout
        if self.options.template is not None and self.restore_duration_ms is None:
            return self.spawned_at + RESTORE_TIMEOUT
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
                invocation.stream_error = stream_error(
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
                case InitDone(restore=restore):
                    self.init_duration_ms = (trio.current_time() - self.spawned_at) * 1000
                    if restore and self.options.template is None:  # SnapStart's contract: the snapshot point
                        self._restore_started = trio.current_time()
                        waiting = self.proto.invocation
                        if waiting is not None and waiting.deadline_scope is not None:
                            waiting.deadline_scope.deadline = self._restore_started + RESTORE_TIMEOUT
                        if self.options.log_style is logs.LogStyle.LAMBDA:  # RIE prints neither
                            self._write(logs.init_report_line(duration_ms=self.init_duration_ms, phase="init",
                                                              status="success", error_type=None))
                            self._write(logs.restore_start_line(RUNTIME_VERSION))
                case RestoreDone():
                    self.restore_duration_ms = (trio.current_time() - self._restore_started) * 1000
                    if self.options.log_style is logs.LogStyle.LAMBDA:
                        self._write(logs.restore_report_line(duration_ms=self.restore_duration_ms))
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
        elif outcome.kind is OutcomeKind.RESTORE_TIMEOUT:
            if style is logs.LogStyle.LAMBDA:
                self._write(logs.restore_report_line(
                    duration_ms=(trio.current_time() - self._restore_started) * 1000,
                    status="timeout", error_type=None))
            self._report(invocation, status="timeout", error_type=outcome.error_type)
        elif outcome.kind in (OutcomeKind.EXIT_ERROR, OutcomeKind.INIT_ERROR, OutcomeKind.RESTORE_ERROR):
            if self._restore_started is not None and self.restore_duration_ms is None and style is logs.LogStyle.LAMBDA:
                self._write(logs.restore_report_line(
                    duration_ms=(trio.current_time() - self._restore_started) * 1000,
                    status="error", error_type=outcome.error_type))
            elif invocation.delivered_at is None and style is logs.LogStyle.LAMBDA:
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
        init_ms = restore_ms = None
        if not self._init_reported and self.init_duration_ms is not None:
            # Only the environment's first invocation carries its init (or, SnapStart, its restore).
            self._init_reported = True
            if self._restore_started is None:
                init_ms = self.init_duration_ms
            else:
                restore_ms = self.restore_duration_ms
        peak = self.peak_memory_mb()
        memory = self.options.memory_mb
        lines = (logs.end_line(invocation.request_id) + logs.report_line(
            self.options.log_style,
            invocation.request_id,
            duration_ms=duration_ms,
            memory_mb=memory,
            max_memory_used_mb=min(peak, memory) if peak is not None else memory,
            init_duration_ms=init_ms,
            restore_duration_ms=restore_ms,
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

class InvalidEntrypoint(Exception):
    """The runtime command cannot start here; the message is doctor's plain-language reason."""


def entrypoint_outcome(exc: Exception, request_id: str) -> Outcome:
    """A runtime that cannot start: doctor's reason (InvalidEntrypoint), or RIE's wording for an
    exec error, `fork/exec <path>: <reason>`."""
    if isinstance(exc, InvalidEntrypoint):
        return _invalid_entrypoint(str(exc), request_id)
    assert isinstance(exc, OSError)
    reason = (exc.strerror or str(exc)).lower()
    return _invalid_entrypoint(f"fork/exec {exc.filename}: {reason}", request_id)


def _invalid_entrypoint(reason: str, request_id: str) -> Outcome:
    message = f"RequestId: {request_id} Error: {reason}"
    return Outcome(OutcomeKind.EXIT_ERROR, error_json("Runtime.InvalidEntrypoint", message), "Runtime.InvalidEntrypoint")
