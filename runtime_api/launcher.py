"""How an environment's runtime comes to exist: a `Launcher`, injected into each environment.

`ExecLauncher` execs the runtime's command in the environment's confinement (cgroups or
RLIMIT_DATA, a private /tmp and read-only /var/task, strict's network namespace and deny-list, the
runtime's user). SnapStart's `RestoreLauncher` (snapstart.py) makes the runtime a copy of its
function's template instead. The environment does not know which it has: it asks its launcher for
its Runtime API listener and for the runtime, and learns from `start` where the runtime's restore
begins.

An environment with external extensions asks for a `Place` instead (`ExecLauncher.place`): its
confinement made once (the cgroups, and where there is one, the mount namespace, kept by a holder
process), in which it starts each extension and then, once they have registered, the runtime, all
sharing one /tmp, one /opt, one network and one memory limit, as on Lambda.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import trio

from sandbox import layers as opt
from sandbox import netns
from sandbox.confinement import Confinement, Limits
from sandbox.hostlimits import host_limit
from sandbox.isolation import Isolation, sandbox_hosts, script_interpreter
from sandbox import reaper
from sandbox.process import (
    OutputPipe,
    RuntimeProcess,
    RuntimeSpec,
    confine,
    confine_holder,
    confine_joining,
    launch_runtime,
    reap,
    spawn,
)
from sandbox.runtime_cache import cache_dir
from sandbox.strict import StrictExec

from .outcomes import Outcome, invalid_entrypoint_outcome
from .protocol import Start


class LaunchFailed(Exception):
    """The runtime could not be launched (or its SnapStart template could not be built);
    `outcome_for(request_id)` is what each invocation that needed it gets."""

    def __init__(self, error_type: str, outcome_for: Callable[[str], Outcome]) -> None:
        super().__init__(error_type)
        self.error_type = error_type
        self.outcome_for = outcome_for


def invalid_entrypoint(reason: str) -> LaunchFailed:
    """A runtime command that cannot start here, with doctor's plain-language reason."""
    return LaunchFailed("Runtime.InvalidEntrypoint", lambda request_id: invalid_entrypoint_outcome(request_id, reason))


def exec_failed(exc: OSError) -> LaunchFailed:
    """An exec error, in RIE's words: `fork/exec <path>: <reason>`."""
    reason = (exc.strerror or str(exc)).lower()
    return invalid_entrypoint(f"fork/exec {exc.filename}: {reason}")


@dataclass(slots=True)
class Listening:
    """Where an environment's Runtime API listens: its listeners and, under strict, the network
    namespace they are in (127.0.0.1:9001 there, as on Lambda)."""

    listeners: list[trio.SocketListener]
    namespace: netns.NetworkNamespace | None = None

    @property
    def address(self) -> str:
        """host:port of the first listener, as the runtime's AWS_LAMBDA_RUNTIME_API gives it."""
        host, port = self.listeners[0].socket.getsockname()[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        if self.namespace is not None:
            self.namespace.close()  # the kernel frees it once its last process is gone too


@dataclass(frozen=True, slots=True)
class Launch:
    """One runtime to launch: what to run, where its output goes, the environment's listening
    place, and (SnapStart) whether it is staged ahead of demand and whom to tell as its restore
    begins."""

    spec: RuntimeSpec
    output: OutputPipe
    listening: Listening
    staged: bool = False
    restore_starting: Callable[[], None] = lambda: None


class Launcher:
    """Launches runtimes in `confinement`: subclasses say how (`_start`); the limits are made here
    and undone if the launch fails."""

    start = Start.INIT  # where its runtimes' restore begins (protocol.Start)

    def __init__(self, confinement: Confinement) -> None:
        self.confinement = confinement

    async def listen(self, host: str, port: int) -> Listening:
        """The Runtime API's listener for one environment: on the host's loopback."""
        return Listening(await trio.open_tcp_listeners(port, host=host))

    async def launch(self, launch: Launch) -> RuntimeProcess:
        """Start the runtime. Raises LaunchFailed if it cannot be started at all."""
        limits = self.confinement.limits(launch.listening.address)
        try:
            return await self._start(launch, limits)
        except BaseException:
            if limits.cgroup is not None:
                with trio.CancelScope(shield=True):
                    await limits.cgroup.terminate()
                    await limits.cgroup.remove_when_empty()
            raise

    async def _start(self, launch: Launch, limits: Limits) -> RuntimeProcess:
        raise NotImplementedError

    async def place(self, launch: Launch, programs: tuple[str, ...]) -> Place:
        """The environment's confinement, for a runtime started after its external extensions
        (`programs`, their host paths). Raises LaunchFailed if the runtime cannot start here."""
        raise LaunchFailed("Extension.LaunchError", lambda request_id: invalid_entrypoint_outcome(
            request_id, "external extensions need a runtime that is exec'd, not restored from a template"))


class Place:
    """One environment's confinement, holding its runtime and external extensions: each `start`ed
    in it, `close` kills and reaps whatever is left and removes the cgroups."""

    def __init__(self, launcher: ExecLauncher, listening: Listening, limits: Limits,
                 holder: RuntimeProcess | None) -> None:
        self._launcher = launcher
        self._listening = listening
        self.limits = limits
        self.holder = holder  # keeps the mount namespace the others join (None: there is none)
        self.processes: list[RuntimeProcess] = []

    async def start(self, spec: RuntimeSpec, output: OutputPipe, *, runtime: bool = False) -> RuntimeProcess:
        """Start a process in the environment (the runtime's cgroups are its `cgroup`). OSError if
        it cannot be started at all."""
        confinement = self._launcher.confinement
        strict = self._launcher.strict_exec(self._listening)
        limits = self.limits
        if self.holder is not None:
            confined = confine_joining(self.holder.pid, spec, limits.cgroup, limits.rlimit_data_mb,
                                       confinement.private_filesystem, strict, confinement.user)
        else:
            confined = confine(spec, limits.cgroup, limits.rlimit_data_mb, None, strict, confinement.user)
        process = await spawn(confined, spec.cwd if self.holder is None else None, output,
                              limits.cgroup if runtime else None, tree=False)
        self.processes.append(process)
        return process

    async def close(self) -> None:
        """Kill every process of the environment and reap it (and what it orphaned to us)."""
        with trio.CancelScope(shield=True):
            everyone = [*self.processes, *([self.holder] if self.holder is not None else [])]
            for process in everyone:
                await reap(process)
            if self.limits.cgroup is not None:
                await self.limits.cgroup.terminate()
                await self.limits.cgroup.remove_when_empty()
            else:
                for process in everyone:
                    reaper.end_session(process.pid)


class ExecLauncher(Launcher):
    """Execs the runtime's command. `entrypoint_check(argv0, cwd=, path=)` gives the reason a
    command cannot start before it is tried (lambdalet serve: sandbox.doctor's), or None;
    lambdalet-rie has none and keeps RIE's exec-error wording."""

    def __init__(self, confinement: Confinement,
                 entrypoint_check: Callable[..., str | None] | None = None) -> None:
        super().__init__(confinement)
        self._entrypoint_check = entrypoint_check

    async def listen(self, host: str, port: int) -> Listening:
        if self.confinement.network_namespace:
            namespace = await netns.open_namespace()
            return Listening([namespace.listener], namespace)
        return await super().listen(host, port)

    async def _start(self, launch: Launch, limits: Limits) -> RuntimeProcess:
        spec = launch.spec
        if self._entrypoint_check is not None:
            problem = self._entrypoint_check(spec.argv[0], cwd=spec.cwd, path=spec.env.get("PATH"))
            if problem is not None:
                raise invalid_entrypoint(problem)
        confinement = self.confinement
        try:
            return await launch_runtime(
                spec, launch.output, cgroup=limits.cgroup, rlimit_data_mb=limits.rlimit_data_mb,
                filesystem=confinement.private_filesystem, strict=self.strict_exec(launch.listening),
                user=confinement.user)
        except OSError as exc:
            raise host_limit(exc) or exec_failed(exc) from None

    async def place(self, launch: Launch, programs: tuple[str, ...]) -> Place:
        spec = launch.spec
        if self._entrypoint_check is not None:
            problem = self._entrypoint_check(spec.argv[0], cwd=spec.cwd, path=spec.env.get("PATH"))
            if problem is not None:
                raise invalid_entrypoint(problem)
        limits = self.confinement.limits(launch.listening.address)
        holder = None
        try:
            filesystem = self.confinement.private_filesystem
            if filesystem is not None:
                output = OutputPipe()
                try:
                    confined = confine_holder(spec, limits.cgroup, limits.rlimit_data_mb, filesystem,
                                              self.strict_exec(launch.listening), also=programs,
                                              hosts=self._hosts())
                    holder = await spawn(confined, None, output, tree=False)
                    said = await _first_line(output)
                finally:
                    output.close()
                if said is not None:  # it ended before it was ready: the mounts failed
                    raise invalid_entrypoint(f"the environment could not be made: {said}")
            return Place(self, launch.listening, limits, holder)
        except BaseException:
            with trio.CancelScope(shield=True):
                await Place(self, launch.listening, limits, holder).close()
            raise

    @functools.cache
    def _hosts(self) -> str:
        """The /etc/hosts its environments with extensions see (where `sandbox` is their own)."""
        return sandbox_hosts(str(cache_dir()))

    def strict_exec(self, listening: Listening) -> StrictExec | None:
        """Strict's last step before the runtime's exec: join the namespace, load the deny-list."""
        strict = self.confinement.strict
        if self.confinement.isolation is not Isolation.STRICT or strict is None or strict.helper is None:
            return None
        namespace = listening.namespace
        if namespace is None:
            return StrictExec(strict.helper)
        return StrictExec(strict.helper, namespace.fd, namespace.user_fd if namespace.user_fd >= 0 else None)


async def _first_line(output: OutputPipe) -> str | None:
    """Wait for the holder's empty line (it is ready: None), or for its end: then what it said
    instead (the shim's error)."""
    said = b""
    while True:
        await trio.lowlevel.wait_readable(output.read_fd)
        data = output.drain()
        if not data:
            return said.decode(errors="replace").strip() or "its holder process exited"
        said += data
        if said == b"\n":
            return None


def command_check(layers: tuple[str, ...], check: Callable[..., str | None]) -> Callable[..., str | None]:
    """`check`, except for a script whose #! interpreter is in a layer (/opt/bin/python): it runs
    where /opt is shown, and the host cannot judge that path."""

    def entrypoint_check(argv0: str, *, cwd: str | None = None, path: str | None = None) -> str | None:
        program = shutil.which(argv0, path=path) if "/" not in argv0 else argv0
        if opt.in_layers(layers, script_interpreter(program)):
            return None
        return check(argv0, cwd=cwd, path=path)

    return entrypoint_check
