"""SnapStart by fork: a function's template, and the launcher that makes its restores.

The template is an environment of its own whose runtime (lambdalet's bootstrap) initialises with
`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`, runs the before-snapshot hooks and parks as a fork
template (bootstrap/template.py), as Lambda snapshots a function version once it is published.
Every environment of the function is then a copy of it: its `RestoreLauncher` asks the template
for a fork, which joins the environment's cgroups and private /tmp, connects to the environment's
own Runtime API and goes on with `GET restore/next`, the after-restore hooks and invocations. The
copies are the server's children (the template forks them twice), so killing the template leaves
them running, and the next restore builds a new template.

The template is built when the function starts, and again when it is gone, when the function's
code changed (its content hash, codewatch.py), or after `rotate_after` restores. It builds its own
environment with the factory it is given (the server's), so this module does not depend on
environment.py; environments depend on it only through the `Launcher` interface.
"""

from __future__ import annotations

import array
import dataclasses
import logging
import os
import socket
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
import trio

from bootstrap import mountplan
from sandbox import restore as restore_steps
from sandbox.cgroups import EnvironmentCgroup
from sandbox.confinement import Confinement, Limits
from sandbox.hostlimits import host_limit
from sandbox.process import RuntimeProcess, RuntimeSpec

from .codewatch import CodeWatch, code_stamp, content_hash
from .launcher import Launch, Launcher, LaunchFailed, exec_failed, invalid_entrypoint
from .outcomes import Outcome, OutcomeKind, error_json, exit_outcome
from .protocol import Start

if TYPE_CHECKING:
    from .environment import Environment, EnvironmentOptions

log = logging.getLogger("lambdalet")

TEMPLATE_ENV = "_LAMBDALET_TEMPLATE"  # read by bootstrap.config
# Lambda gives SnapStart's init (snapshot creation) up to 15 minutes.
TEMPLATE_INIT_TIMEOUT = 900.0
FORK_ANSWER_TIMEOUT = 5.0  # the template answers a restore request at once; this only bounds a hang

EnvironmentFactory = Callable[[Callable[[str], RuntimeSpec], "EnvironmentOptions"], "Environment"]


class RestoreRequest(msgspec.Struct, omit_defaults=True):
    """What a copy needs to join its environment (bootstrap/template.py reads it with `json`)."""

    environ: dict[str, str]
    cgroup_tasks: list[str] = []


class TemplateSettings(msgspec.Struct):
    """`_LAMBDALET_TEMPLATE`: where the template is served, and how its copies make their private
    /tmp (sandbox/restore.py's plan, as bootstrap.mountplan encodes it), ahead of their environments."""

    control: str
    mounts: list[dict[str, str | int]] | None = None


class Template:
    """A function's SnapStart template. `restore` makes a copy of it for an environment; `launcher`
    is the environments' way to ask for one."""

    def __init__(
        self,
        make_spec: Callable[[str], RuntimeSpec],
        options: EnvironmentOptions,
        make_environment: EnvironmentFactory,
        *,
        confinement: Confinement,
        code: str,
        layers: tuple[str, ...] = (),
        configuration: bytes = b"",
        rotate_after: int | None = None,
    ) -> None:
        self._make_spec = make_spec
        self._make_environment = make_environment
        self._confinement = confinement
        self._trees = (code, *layers)  # what the template is made of, in Lambda's order
        self._configuration = configuration  # the function's configuration, part of the snapshot
        self.rotate_after = rotate_after
        self.options = dataclasses.replace(options, snapstart=True, port=0, provisioned=False,
                                           idle_timeout=float("inf"), init_timeout=None)
        self.launcher = RestoreLauncher(self, confinement)
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()  # one build, one fork at a time (the template serves them in turn)
        self.environment: Environment | None = None
        self._control: trio.socket.SocketType | None = None
        self._spec_env: dict[str, str] = {}  # the template's environment, as the host gave it
        self._stamp: tuple | None = None  # the code's file stamps when the template was built
        self._watch: CodeWatch | None = None  # tells cheaply whether they may have moved since
        self.content_hash = ""
        self.restores = 0  # by this template
        self.failure: LaunchFailed | None = None  # how the last build failed, until one succeeds
        self.builds = 0
        self.resident_bytes = 0  # the parked template's resident set, which each copy starts with
        self._copies: weakref.WeakKeyDictionary[RuntimeProcess, int] = weakref.WeakKeyDictionary()  # -> build

    @property
    def function_name(self) -> str:
        return self.options.function_name

    def start(self, nursery: trio.Nursery) -> None:
        """Build the template in the background (invocations that come meanwhile wait for it)."""
        self._nursery = nursery
        nursery.start_soon(self._build_locked)

    async def _build_locked(self) -> None:
        async with self._lock:
            try:
                await self._ensure()
            except LaunchFailed:
                pass  # said in the log; the next invocation tries again

    # -- restores ------------------------------------------------------------------------------------

    async def restore(self, launch: Launch, cgroup: EnvironmentCgroup | None) -> RuntimeProcess:
        """A copy of the template for `launch`'s environment, its stdout and stderr on its output
        pipe, in `cgroup` and (when the template has one) a private /tmp. Raises LaunchFailed if no
        template can be built."""
        async with self._lock:
            if launch.staged and self.failure is not None:
                raise self.failure  # only an invocation tries a failed template again
            for attempt in (1, 2):
                # A staged copy is made off any invocation's path: it can afford the walk that
                # also catches changes inotify cannot see.
                await self._ensure(walk=launch.staged)
                if not launch.staged:  # a staged copy's restore starts when it is wanted
                    launch.restore_starting()
                if cgroup is not None:  # the copy's memory as Lambda counts a restored snapshot's
                    try:
                        cgroup.inherit(self.resident_bytes)
                    except OSError as exc:  # this environment fails to launch, not the function
                        raise invalid_entrypoint(f"the copy's memory limit: {exc.strerror or exc}") from None
                request = RestoreRequest(environ=self._environ_for(launch.spec),
                                         cgroup_tasks=restore_steps.cgroup_tasks(cgroup))
                try:
                    pid = await self._fork(request, launch.output.write_fd)
                except OSError as exc:
                    if attempt == 2:
                        raise exec_failed(exc) from None
                    log.warning("function %s: the SnapStart template is gone (%s); building a new one",
                                self.function_name, exc)
                    self._discard()
                    continue
                if not launch.staged:  # a staged copy counts once it is taken
                    self.restores += 1
                launch.output.close_write_end()
                process = RuntimeProcess(pid, cgroup)
                self._copies[process] = self.builds
                return process
        raise AssertionError("unreachable")

    @property
    def _private(self) -> bool:
        return self._confinement.private_filesystem is not None

    def _environ_for(self, spec: RuntimeSpec) -> dict[str, str]:
        """The variables in which the copy's environment differs from the template's (its Runtime
        API, its log stream), as its runtime sees them."""
        template = self._spec_env
        changed = {key: value for key, value in spec.env.items() if template.get(key) != value}
        if self._private:  # only the ones that differ are shown as the runtime sees them
            _, changed = self._confinement.filesystem.present((), changed)
        return changed

    async def _fork(self, request: RestoreRequest, output_fd: int) -> int:
        """The pid of a copy that has joined its environment. The copy reports it on a channel of
        its own before it does anything there, so a template that ends before it answers cannot
        lead to a second copy for the same environment (bootstrap/template.py)."""
        control = self._control
        if control is None:
            raise OSError("no template")
        try:
            report, copy_end = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:  # the host's limit, not the template's end (sandbox/hostlimits.py)
            raise host_limit(exc) or exc from None
        reported = answer = b""
        try:
            fds = array.array("i", [output_fd, copy_end.fileno()])
            # Shielded: once the request is sent a copy may exist, and only its pid lets the server
            # reap it, even if its environment is being stopped meanwhile.
            with trio.CancelScope(shield=True), trio.move_on_after(FORK_ANSWER_TIMEOUT) as late:
                await control.sendmsg([msgspec.json.encode(request)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                copy_end.close()  # from now on, only the template and its spare hold it
                reported = await report.recv(32)  # b"" once they have let go of it without a copy
                answer = await control.recv(256)
        finally:
            report.close()
            copy_end.close()
        if reported.isdigit():
            if answer != reported:
                log.warning("function %s: the SnapStart template ended after a restore (%s); the next restore "
                            "builds a new one", self.function_name,
                            "it did not answer" if late.cancelled_caught else "it closed its control socket")
                self._discard()
            return int(reported)
        if late.cancelled_caught:
            raise OSError(f"the template did not answer within {FORK_ANSWER_TIMEOUT:.0f} s")
        if not answer:
            raise OSError("the template closed its control socket")
        if not answer.isdigit():
            raise OSError(answer.decode(errors="replace"))
        raise OSError("the copy ended before reporting itself")

    # -- building ------------------------------------------------------------------------------------

    def take(self, env: Environment) -> bool:
        """Whether `env`, staged earlier, may serve now as a restore of this template: it is a copy
        of the template as it is (not rebuilt or due to rotate since), and the code is unchanged."""
        if env.process is None or self._copies.get(env.process) != self.builds or self._rotation_due:
            return False
        if not self._current():
            self._discard()  # known to be out of date: the next restore builds anew, without asking again
            return False
        self.restores += 1
        return True

    @property
    def _rotation_due(self) -> bool:
        return self.rotate_after is not None and self.restores >= self.rotate_after

    def _current(self, *, walk: bool = False) -> bool:
        """Whether the template is alive and its code (and layers, and configuration) unchanged:
        by inotify (codewatch) unless `walk`, then by the files' stamps and, if those moved, the
        content hash."""
        env = self.environment
        if env is None or self._control is None or not env.alive:
            return False
        if not walk and self._watch is not None and not self._watch.changed():
            return True
        stamp = code_stamp(self._trees)
        if stamp != self._stamp:
            if self._content_hash(stamp) != self.content_hash:
                log.warning("function %s: the code changed; building a new SnapStart template", self.function_name)
                return False
            self._stamp = stamp  # touched, not changed
        return True

    def _content_hash(self, stamp: tuple) -> str:
        return content_hash(self._trees, stamp, self._configuration)

    async def _ensure(self, *, walk: bool = False) -> None:
        if self._rotation_due and self.environment is not None:
            log.info("function %s: rotating the SnapStart template after %d restores",
                     self.function_name, self.restores)
        elif self._current(walk=walk):
            return
        self._discard()
        await self._build()

    def _discard(self) -> None:
        if self.environment is not None:
            self.environment.shutdown()
            self.environment = None
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    async def _build(self) -> None:
        """Start a template and wait until it is parked (READY), or failed."""
        assert self._nursery is not None, "Template.start was not called"
        address = f"lambdalet/{os.getpid()}/{self.function_name}/{uuid.uuid4().hex[:12]}"
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        await listener.bind("\0" + address)
        listener.listen(1)
        self._watch = CodeWatch(self._trees)  # before the stamps: no change slips by
        self._stamp = code_stamp(self._trees)
        self.content_hash = self._content_hash(self._stamp)

        def make_spec(runtime_api: str) -> RuntimeSpec:
            spec = self._make_spec(runtime_api)
            mounts = (mountplan.encode(restore_steps.private_tmp(self._confinement.filesystem, spec.argv, spec.env,
                                                                 spec.cwd))
                      if self._private else None)
            settings = msgspec.json.encode(TemplateSettings(address, mounts)).decode()
            spec = dataclasses.replace(spec, env={**spec.env, TEMPLATE_ENV: settings})
            self._spec_env = {k: v for k, v in spec.env.items() if k != TEMPLATE_ENV}  # as the host has them
            return spec

        env = self._make_environment(make_spec, self.options)
        self.builds += 1
        try:
            await self._nursery.start(env.run)
            self.environment = env
            with trio.move_on_after(TEMPLATE_INIT_TIMEOUT) as timeout:
                async with trio.open_nursery() as race:
                    async def exited() -> None:
                        await env.closed.wait()
                        race.cancel_scope.cancel()
                    race.start_soon(exited)
                    try:
                        await env.launch()
                    except LaunchFailed as failed:
                        raise self._report_failure(env, failed) from None
                    control, _ = await listener.accept()
                    race.cancel_scope.cancel()
            if timeout.cancelled_caught or env.closed.is_set():
                raise self._report_failure(env, self._failed_init(env, timed_out=timeout.cancelled_caught))
            if await control.recv(16) != b"READY":
                control.close()
                raise self._report_failure(env, self._failed_init(env))
            self._control = control
            # Parked, the template's cgroup is charged for every page its spares touch before they
            # join their environments (a page stays charged to the cgroup that first touched it; the
            # memory controller does not move charges with a process), so its limit, which guarded
            # the init, would end the template after a few hundred restores.
            if env.cgroup is not None:
                env.cgroup.lift_memory_limit()
            self.resident_bytes = _resident_bytes(env.pid)
            self.restores = 0
            self.failure = None
            env.template_ready()
        except LaunchFailed as failed:
            self.failure = failed
            self._discard()
            raise
        except BaseException:
            self._discard()
            raise
        finally:
            listener.close()

    @staticmethod
    def _failed_init(env: Environment, *, timed_out: bool = False) -> LaunchFailed:
        """What the template's init left for the invocations waiting on it."""
        posted = env.init_error
        if posted is not None:
            body, error_type = posted
            return LaunchFailed(error_type, lambda request_id: Outcome(OutcomeKind.INIT_ERROR, body, error_type))
        if timed_out:
            message = f"SnapStart init timed out after {TEMPLATE_INIT_TIMEOUT:.2f} seconds"
            return LaunchFailed("Sandbox.Timedout", lambda request_id: Outcome(
                OutcomeKind.INIT_ERROR, error_json("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}"),
                "Sandbox.Timedout"))
        status = env.exit_status if env.exit_status is not None else -9
        return LaunchFailed(exit_outcome("", status).error_type, lambda request_id: exit_outcome(request_id, status))

    def _report_failure(self, env: Environment, failed: LaunchFailed) -> LaunchFailed:
        env.template_failed(failed.error_type)
        log.warning("function %s: the SnapStart template failed its init: %s", self.function_name, failed.error_type)
        return failed


def _resident_bytes(pid: int | None) -> int:
    """A process's resident set (VmRSS), or 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RestoreLauncher(Launcher):
    """Launches each runtime as a copy of the function's template: its restore begins as it is
    made (or, staged ahead of demand, when it is wanted)."""

    start = Start.RESTORE

    def __init__(self, template: Template, confinement: Confinement) -> None:
        super().__init__(confinement)
        self.template = template

    async def _start(self, launch: Launch, limits: Limits) -> RuntimeProcess:
        # A copy runs no command of its own (its template's was checked), and its memory guard is
        # its cgroup (the copy is born under its template's rlimits).
        return await self.template.restore(launch, limits.cgroup)
