"""A function's pool of execution environments and the dispatch of its invocations.

Up to `concurrency` invocations run at once, each in its own environment: an idle environment is
reused warm, a new one is started when none is idle (scale from zero), and past the limit the
caller is refused (Lambda's 429) or, in RIE's single-environment world, waits its turn. An
environment counts against the limit from the moment it takes an invocation until its runtime asks
for the next one (or dies). The function's nursery owns every environment: nothing outlives it.

Under SnapStart by fork one environment is kept staged: its copy of the template forked, in its
cgroups and private /tmp, connected to its own Runtime API and waiting in `restore/next` (where
Lambda takes the snapshot), with none of the function's code run since the template's init. The
next invocation that needs a new environment takes it, and its restore (RESTORE_START, the
after-restore hooks, the first invocation) starts only then; the next one is staged once that
invocation is answered, off the restore's path.

A function is retired when the server swaps in a new version of it (its code or configuration
changed) or drops it: it takes no new invocations, its idle environments shut down at once, the busy
ones once their invocation is over, and `run` returns when none is left. A function with tenant
isolation (`TenancyConfig: PER_TENANT`) gives an environment to one tenant only, as Lambda does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import trio

from sandbox.hostlimits import HostLimitReached, check_open_files, host_limit
from sandbox.process import RuntimeSpec

from . import logs
from .environment import Environment, EnvironmentOptions
from .invocation import Invocation
from .launcher import Launcher, LaunchFailed
from .outcomes import Outcome
from .snapstart import RestoreLauncher, Template

log = logging.getLogger("lambdalet")

# How long an invocation waits for a finishing environment before starting a new one: well under
# a cold start (tens of milliseconds), well over a runtime's post-then-next gap (a fraction of one).
FINISHING_GRACE_SECONDS = 0.05


class TooManyRequests(Exception):
    """Every environment the function may have is busy."""


class FunctionRetired(Exception):
    """The function was retired while the invocation waited: it belongs to its successor, if any."""


class Function:
    def __init__(
        self,
        name: str,
        make_spec: Callable[[str], RuntimeSpec],
        options: EnvironmentOptions,
        sink: logs.LogSink,
        launcher: Launcher,
        *,
        concurrency: int,
        queue: bool = False,
        standby: bool = False,
        provisioned: int = 0,
        provisioned_spec: Callable[[str], RuntimeSpec] | None = None,
    ) -> None:
        self.name = name
        self._make_spec = make_spec
        self.options = options
        self._sink = sink
        # How its environments' runtimes come to exist: exec'd, or (SnapStart by fork) restored
        # as copies of its template.
        self.launcher = launcher
        self.template: Template | None = launcher.template if isinstance(launcher, RestoreLauncher) else None
        self.concurrency = concurrency
        self.queue = queue
        # Keep an environment listening at the fixed Runtime API address at all times, its runtime
        # launched by the first invocation (RIE: the Runtime API is up from the start).
        self.standby = standby
        self._standby_pending = False
        self._standby_listeners: list[trio.SocketListener] = []
        # Provisioned concurrency: environments initialised ahead of demand and kept (never reaped
        # when idle), their runtimes told AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency.
        self.provisioned = provisioned
        self._provisioned_changed = trio.Event()
        self._provisioned_spec = provisioned_spec or make_spec
        self._limiter = trio.CapacityLimiter(concurrency)
        self._idle: list[Environment] = []  # most recently used last: reuse the warmest
        self._holders: dict[Environment, Invocation] = {}  # environments holding a concurrency slot
        self.environments: set[Environment] = set()
        self._nursery: trio.Nursery | None = None
        self._idle_changed = trio.Event()
        self._staged: Environment | None = None  # SnapStart by fork: the next environment, staged
        self._staging = False
        self._staged_changed = trio.Event()
        self._tenants: dict[Environment, str] = {}  # tenant isolation: the tenant each environment serves
        self.retired = False
        self._retired = trio.Event()

    def __repr__(self) -> str:
        return f"<Function {self.name} environments={len(self.environments)} idle={len(self._idle)}>"

    def statistics(self) -> dict:
        return {
            "name": self.name,
            "environments": [env.statistics() for env in self.environments],
            "idle": len(self._idle),
            "busy": len(self._holders),
        }

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Own the function's environments until cancelled."""
        if self.standby:
            self._standby_listeners = await trio.open_tcp_listeners(self.options.port, host=self.options.host)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.template is not None:
                    self.template.start(nursery)
                    nursery.start_soon(self._stage)
                if self.standby:
                    self._standby_pending = True
                    await self._add_standby()
                for _ in range(self.provisioned):
                    await self._add_provisioned()
                task_status.started(self)
                await self._retired.wait()
                while self.environments:  # the busy ones finish their invocations
                    await self._idle_changed.wait()
                nursery.cancel_scope.cancel()  # its SnapStart template too
        finally:
            # Only once no environment can be using it any more.
            for listener in self._standby_listeners:
                await trio.aclose_forcefully(listener)

    async def _add_standby(self) -> None:
        """An environment on the fixed Runtime API address, once the one before has let go of it.
        (`_standby_pending` is set by whoever schedules this, so waiters know one is coming.)"""
        try:
            for env in [env for env in self.environments if env.options.port == self.options.port]:
                await env.closed.wait()
            env = Environment(self._make_spec, self.options, self._sink, self.launcher,
                              on_idle=self._environment_idle, listeners=self._standby_listeners)
            self._environment_idle(await self._nursery.start(self._environment_task, env))
        finally:
            self._standby_pending = False

    async def _add_provisioned(self) -> None:
        """An environment whose runtime starts its init now, not when an invocation comes."""
        options = dataclasses.replace(self.options, port=0, idle_timeout=float("inf"), provisioned=True)
        env = await self._nursery.start(self._environment_task, Environment(
            self._provisioned_spec, options, self._sink, self.launcher, on_idle=self._environment_idle))
        await env.launch()
        self._idle.append(env)
        self._provisioned_changed.set()
        self._provisioned_changed = trio.Event()

    async def wait_provisioned(self) -> None:
        """Returns once the function has all its provisioned environments (after a replacement)."""
        while sum(1 for env in self.environments if env.options.provisioned and env.alive) < self.provisioned:
            await self._provisioned_changed.wait()

    async def invoke(self, invocation: Invocation, *, wait: bool | None = None) -> tuple[Outcome, Environment | None]:
        """Run an invocation in one of the function's environments.

        When every allowed environment is busy it waits for one if `wait` (default: the function's
        `queue` setting), else raises TooManyRequests.
        """
        if self.queue if wait is None else wait:
            await self._limiter.acquire_on_behalf_of(invocation)
        elif not await self._acquire_soon(invocation):
            raise TooManyRequests(self.name)
        tenant = invocation.tenant_id
        try:
            env = (self._take_idle(tenant) or await self._wait_finishing(tenant)
                   or await self._wait_standby(tenant))
            if env is None and self.retired:  # no new environment for a function being replaced
                raise FunctionRetired(self.name)
            if env is None:  # a new environment: under SnapStart by fork, a restore
                env = self._take_staged() or await self._start_environment()
                if self.template is not None:
                    self._nursery.start_soon(self._stage_after, invocation, env)
        except BaseException:
            self._limiter.release_on_behalf_of(invocation)
            raise
        self._holders[env] = invocation
        if tenant is not None:
            self._tenants[env] = tenant
        return await env.invoke(invocation), env

    def _finishing(self) -> bool:
        return any(holder.settled.is_set() for holder in self._holders.values())

    async def _acquire_soon(self, invocation: Invocation) -> bool:
        """A concurrency slot now, or within the finishing grace if an environment is finishing
        (a caller invoking again as soon as it has its answer is not over the limit)."""
        try:
            self._limiter.acquire_on_behalf_of_nowait(invocation)
            return True
        except trio.WouldBlock:
            if not self._finishing():
                return False
        with trio.move_on_after(FINISHING_GRACE_SECONDS):
            await self._limiter.acquire_on_behalf_of(invocation)
            return True
        return False

    async def _wait_finishing(self, tenant: str | None) -> Environment | None:
        """An environment whose caller already has its answer is about to ask for its next event
        (runtimes do so at once): wait a moment for it rather than pay a cold start."""
        with trio.move_on_after(FINISHING_GRACE_SECONDS):
            while self._finishing():
                await self._idle_changed.wait()
                env = self._take_idle(tenant)
                if env is not None:
                    return env
        return None

    async def _wait_standby(self, tenant: str | None) -> Environment | None:
        """The standby environment being replaced (after its runtime died) comes in a moment."""
        while self._standby_pending:
            await self._idle_changed.wait()
            env = self._take_idle(tenant)
            if env is not None:
                return env
        return None

    def _take_idle(self, tenant: str | None = None) -> Environment | None:
        """The warmest idle environment (one that served no other tenant)."""
        for index in range(len(self._idle) - 1, -1, -1):
            env = self._idle[index]
            # A runtime that died while idle may not have been noticed yet: its exit is asked of
            # the kernel here, so the invocation goes to a live environment instead.
            if not (env.alive and not env.closing and env.proto.idle and not env.runtime_exited()):
                del self._idle[index]
            elif self._tenants.get(env, tenant) == tenant:
                del self._idle[index]
                return env
        return None

    async def _start_environment(self, *, staged: bool = False) -> Environment:
        assert self._nursery is not None, "Function.run is not running"
        # The fixed Runtime API address (lambdalet-rie's 127.0.0.1:9001) is the standby's; more
        # environments at once get ports of their own.
        options = dataclasses.replace(self.options, port=0) if self.standby else self.options
        check_open_files()
        env = Environment(self._make_spec, options, self._sink, self.launcher, on_idle=self._environment_idle,
                          staged=staged)
        try:
            return await self._nursery.start(self._environment_task, env)
        except OSError as exc:  # its Runtime API listener could not be opened
            raise host_limit(exc) or exc from None

    def _take_staged(self) -> Environment | None:
        env, self._staged = self._staged, None
        if env is None:
            return None
        if env.alive and not env.closing and self.template.take(env):
            return env
        env.shutdown()  # its copy died, or its template is out of date
        return None

    async def _stage_after(self, invocation: Invocation, env: Environment) -> None:
        """Stage the next environment once `invocation` is answered, so that forking it does not
        compete with the restore in progress; not if `env` got no copy (the template failed: the
        next invocation that needs an environment tries again, and says why)."""
        await invocation.settled.wait()
        if env.pid is not None:
            await self._stage()

    async def _stage(self) -> None:
        if self._staging or self._staged is not None or self.retired:
            return
        self._staging = True
        try:
            try:
                env = await self._start_environment(staged=True)
            except HostLimitReached:
                return  # none staged: an invocation that needs an environment is refused, and says why
            try:
                await env.launch()
            except (LaunchFailed, HostLimitReached):
                env.shutdown()  # the invocation that needs an environment builds one, and says why
                return
            self._staged = env
            self._staged_changed.set()
            self._staged_changed = trio.Event()
        finally:
            self._staging = False

    async def wait_staged(self) -> Environment:
        """The staged environment (SnapStart by fork), once there is one."""
        while self._staged is None or not self._staged.alive:
            await self._staged_changed.wait()
        return self._staged

    async def _environment_task(self, env: Environment, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            self.environments.add(env)
            await env.run(task_status=task_status)
        finally:
            self.environments.discard(env)
            self._tenants.pop(env, None)
            if env in self._idle:
                self._idle.remove(env)
            # A replacement, unless the function itself is stopping (then this task is cancelled, or
            # it was retired); announced before the slot is released, so the next invocation waits for it.
            stopping = trio.current_effective_deadline() == float("-inf") or self.retired
            if self.standby and env.options.port == self.options.port and not stopping:
                self._standby_pending = True
                self._nursery.start_soon(self._add_standby)
            if env.options.provisioned and not stopping:  # Lambda keeps the provisioned count
                self._nursery.start_soon(self._add_provisioned)
            self._release(env)
            self._changed()

    def _environment_idle(self, env: Environment) -> None:
        self._release(env)
        if self.retired:
            env.shutdown()
        else:
            self._idle.append(env)
        self._changed()

    def _changed(self) -> None:
        """An environment became idle, or went: wake whoever waits for one."""
        self._idle_changed.set()
        self._idle_changed = trio.Event()

    def _release(self, env: Environment) -> None:
        holder = self._holders.pop(env, None)
        if holder is not None:
            self._limiter.release_on_behalf_of(holder)

    def shutdown(self) -> None:
        for env in list(self.environments):
            env.shutdown()

    async def stop(self) -> None:
        """Take no new invocations and stop every environment now, as Lambda spins them down (an
        environment with external extensions gets its Shutdown phase, `spindown`); returns once
        they are gone, and `run` returns."""
        self.retired = True
        self._retired.set()
        for env in list(self.environments):
            env.shutdown()
        self._changed()
        while self.environments:
            await self._idle_changed.wait()

    def retire(self) -> None:
        """Take no new invocations; shut the idle environments down now and the busy ones once
        their invocation is over (in-flight invocations finish here); `run` returns after them."""
        self.retired = True
        self._retired.set()
        for env in list(self.environments):
            if env not in self._holders:
                env.shutdown()
        self._changed()  # invocations waiting for an environment learn that it is retired

    async def warm(self) -> Environment | None:
        """One environment initialised ahead of demand and left idle for the first invocation (an
        on-demand environment, as Lambda's proactive initialisation makes one: its first REPORT
        carries its Init Duration). Returns it once its init is over (at once while debugging: the
        runtime waits for a debugger first), or None if its init failed or took longer than init may."""
        if self.template is not None:  # SnapStart by fork: the template, and a copy staged from it
            with trio.move_on_after(self.options.init_timeout or float("inf")):
                return await self.wait_staged()
            return None
        try:
            env = await self._start_environment()
        except HostLimitReached:
            return None
        try:
            await env.launch()
        except (LaunchFailed, HostLimitReached):
            env.shutdown()
            return None
        if not self.options.debugging:
            with trio.move_on_after(self.options.init_timeout or float("inf")):
                async with trio.open_nursery() as race:
                    for wait in (env.wait_initialised, env.closed.wait):
                        race.start_soon(_cancel_after, wait, race.cancel_scope)
            if not env.initialised or not env.alive:
                env.shutdown()
                return None
        self._environment_idle(env)
        return env


async def _cancel_after(wait, scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
