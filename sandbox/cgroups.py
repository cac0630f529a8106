"""Per-environment cgroups: Lambda's memory, pids and CPU limits, OOM detection, peak memory, tree kill.

cgroup v1 only (cgroups(7)): the memory, pids and cpu hierarchies, writable by root. cgroup v2 is
not driven yet; where v1 is missing, the memory guard is RLIMIT_DATA (sandbox.host says so). An
environment gets, where each is writable:

* `memory:<host's own memory cgroup>/lambdalet-<host pid>-<n>`: `memory.limit_in_bytes` (and
  `memory.memsw.limit_in_bytes`) = the function's memory; its `oom_kill` counter tells an OOM kill
  from any other SIGKILL, and `memory.max_usage_in_bytes` is REPORT's "Max Memory Used" (the whole
  tree's peak, children and page cache included);
* `pids:<host's own pids cgroup>/lambdalet-<host pid>-<n>`: `pids.max` (DEFAULT_PIDS_MAX);
* with the `lambda` CPU model only, `cpu:<host's own cpu cgroup>/lambdalet-<host pid>-<n>`: a CFS
  quota proportional to memory, as Lambda allots CPU (1,769 MB = one vCPU; `lambda_cpu_quota_us`).
  The default (`host`) creates no cpu cgroup: the runtime shares the host's CPUs.

The tree is killed through the cgroup, never by walking a process's children: SIGKILL through a
pidfd (no pid reuse) to every member listed in `cgroup.procs`, repeated until it is empty (what
forks meanwhile is caught by the next round; the pids limit bounds them).

The runtime joins its cgroups before it execs: it is spawned through a `/bin/sh` shim that writes
`0` (itself) into each cgroup's `tasks` file and then execs the runtime (Popen's preexec_fn is not
safe in a threaded program; writing the pid after spawn would leave the runtime unconfined for a
moment). `tasks` with `0` moves one thread, the shim's only one, which the kernel does without
the global cgroup_threadgroup_rwsem; `cgroup.procs` (and any v2 cgroup, whose `cgroup.kill` would
otherwise serve) takes it for writing, which waits for an RCU grace period: several times what
the whole shim costs otherwise (benchmarks/results/costs.md, "Joining a memory and a pids cgroup").

The host's pid in the name tells whose a cgroup is: at start-up the ones whose owner is dead (a
crashed earlier run) are emptied and removed (`remove_stale`).
"""

from __future__ import annotations

import enum
import errno
import itertools
import logging
import os
import re
import shlex
from collections.abc import Container
import signal
from dataclasses import dataclass

import trio

from . import reaper

log = logging.getLogger("lambdalet")

PREFIX = "lambdalet-"
# Lambda has no documented process limit; 1024 (Lambda's own per-environment figure for
# processes/threads is of that order) stops a fork bomb long before the machine suffers.
DEFAULT_PIDS_MAX = 1024
# Lambda allots CPU in proportion to memory: 1,769 MB is one vCPU (10,240 MB about six).
MB_PER_VCPU = 1769
CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1000  # the kernel's floor is 1 ms
_NAME = re.compile(r"lambdalet-(\d+)-[\w.-]+$")
_counter = itertools.count(1)


class CpuModel(enum.Enum):
    """How much CPU an environment gets: the host's (no limit), or Lambda's share for its memory."""

    HOST = "host"
    LAMBDA = "lambda"

    def __str__(self) -> str:
        return self.value


def lambda_cpu_quota_us(memory_mb: int) -> int:
    """The CFS quota per CPU_PERIOD_US that gives `memory_mb` Lambda's share of CPU."""
    return max(MIN_CPU_QUOTA_US, round(CPU_PERIOD_US * memory_mb / MB_PER_VCPU))


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Where this host process can create environment cgroups (None: not writable here)."""

    memory: str | None = None  # the directory environment cgroups are created in
    pids: str | None = None
    memsw: bool = False  # memory.memsw.* exists (swap accounting)
    cpu: str | None = None  # for the `lambda` CPU model only

    @property
    def any(self) -> bool:
        return bool(self.memory or self.pids)

    def directories(self) -> list[str]:
        return [d for d in (self.memory, self.pids, self.cpu) if d]

    def missing(self) -> list[str]:
        """One line per missing protection, for the start-up warnings."""
        lines = []
        if not self.memory:
            lines.append("no memory limit through cgroups (cgroup v1 memory controller not writable): "
                         "RLIMIT_DATA is the memory guard, an out-of-memory kill is not detected and "
                         "Max Memory Used is the runtime's own peak, not its children's")
        if not self.pids:
            lines.append("no process limit (cgroup v1 pids controller not writable): a fork bomb is not contained")
        if not self.any:
            lines.append("no cgroup at all: environments are killed by process group, so a process that "
                         "leaves it (setsid) outlives its environment")
        return lines


def _mount_points() -> dict[str, str]:
    """v1 controller name -> where its hierarchy is mounted."""
    points: dict[str, str] = {}
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                _, where, kind, options, *_ = line.split()
                if kind == "cgroup":
                    for option in options.split(","):
                        points.setdefault(option, where)
    except OSError:
        pass
    return points


def _own_paths() -> dict[str, str]:
    """The host's own cgroup path per v1 controller (/proc/self/cgroup)."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as own:
            for line in own:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for controller in controllers.split(","):
                    paths[controller] = path
    except OSError:
        pass
    return paths


def _probe(directory: str, required: str) -> bool:
    """Can environment cgroups be created under `directory` (with `required` in them)?"""
    probe = os.path.join(directory, f"{PREFIX}{os.getpid()}-probe")
    try:
        os.mkdir(probe)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        return os.path.exists(os.path.join(probe, required))
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass


def detect() -> CgroupSupport:
    """Probe, once at start-up, which hierarchies this process may create cgroups in."""
    mounts, own = _mount_points(), _own_paths()
    found: dict[str, str | None] = {}
    for key, required in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max"), ("cpu", "cpu.cfs_quota_us")):
        where = mounts.get(key)
        if where is None or key not in own:
            found[key] = None
            continue
        directory = os.path.join(where, own[key].lstrip("/"))
        found[key] = directory if _probe(directory, required) else None
    memsw = bool(found["memory"]) and os.path.exists(os.path.join(found["memory"], "memory.memsw.limit_in_bytes"))
    return CgroupSupport(found["memory"], found["pids"], memsw, found["cpu"])


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _members(directory: str) -> list[int]:
    try:
        return [int(pid) for pid in _read(os.path.join(directory, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


def _member_pidfds(directory: str, known: Container[int] = ()) -> dict[int, int]:
    """pid -> pidfd for the cgroup's members, but those in `known`. A pid listed may have been
    reused by the time its pidfd is opened: it counts only if, with the pidfd open (so the pid is
    pinned while it lives), the process is still a member."""
    fds = {}
    name = os.path.basename(directory)
    for pid in _members(directory):
        if pid in known:
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                member = any(line.rstrip("\n").endswith("/" + name) for line in f)
            signal.pidfd_send_signal(fd, 0)  # the /proc entry read was this process's
        except OSError:
            member = False
        if member:
            fds[pid] = fd
        else:
            os.close(fd)
    return fds


def _kill_members(directory: str) -> list[int]:
    """SIGKILL every member of the cgroup through pidfds (no pid can be reused under us);
    returns the pidfds, which the caller closes."""
    fds = list(_member_pidfds(directory).values())
    for fd in fds:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
    return fds


def _reap_pidfd(fd: int) -> bool:
    """Reap the process if it has exited and became our child (re-parented to us, the
    subreaper); else leave it to its parent. True once it is gone for good (reaped by us or by
    its parent). Only ever called on members of our cgroups, so it never steals another wait."""
    try:
        if os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None:
            return True
    except ChildProcessError:
        pass
    try:
        signal.pidfd_send_signal(fd, 0)
    except ProcessLookupError:
        return True  # reaped by its parent
    return False


# What a SnapStart copy keeps for itself whatever its template holds (see `inherit`).
MIN_OWN_BYTES = 4 * 1024 * 1024


class EnvironmentCgroup:
    """One environment's cgroups. Create it before the runtime is spawned, `terminate` it once the
    runtime is reaped, read its OOM counter and peak, then `remove` it."""

    def __init__(self, support: CgroupSupport, *, memory_mb: int, pids_max: int = DEFAULT_PIDS_MAX,
                 cpu_quota_us: int | None = None) -> None:
        """`cpu_quota_us`: a CFS quota per CPU_PERIOD_US in a cpu cgroup of its own (where the
        host has one); None: no cpu cgroup, the host's CPUs."""
        self.support = support
        self.name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.memory = os.path.join(support.memory, self.name) if support.memory else None
        self.pids = os.path.join(support.pids, self.name) if support.pids else None
        self.cpu = os.path.join(support.cpu, self.name) if support.cpu and cpu_quota_us is not None else None
        self.runtime_pid: int | None = None  # reaped by its RuntimeProcess, never here
        self.memory_bytes = memory_mb * 1024 * 1024
        self.inherited_bytes = 0  # see `inherit`
        self._peak_bytes = 0
        self._oom_seen = 0
        self._tracked: dict[int, int] = {}  # pid -> pidfd of members seen, until they are gone
        self.created: list[str] = []
        try:
            for directory in self.directories():
                os.mkdir(directory)
                self.created.append(directory)
            if self.memory:
                limit = str(memory_mb * 1024 * 1024)
                _write(os.path.join(self.memory, "memory.limit_in_bytes"), limit)
                if support.memsw:
                    _write(os.path.join(self.memory, "memory.memsw.limit_in_bytes"), limit)
            if self.pids:
                _write(os.path.join(self.pids, "pids.max"), str(pids_max))
            if self.cpu:
                _write(os.path.join(self.cpu, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
                _write(os.path.join(self.cpu, "cpu.cfs_quota_us"), str(cpu_quota_us))
        except BaseException:
            self.remove()
            raise

    def __repr__(self) -> str:
        return f"<EnvironmentCgroup {self.name}>"

    def inherit(self, resident_bytes: int) -> None:
        """For a SnapStart copy, before it joins: the pages it shares with its template are charged
        to the template's cgroup, not to this one, yet on Lambda a restored snapshot's memory counts
        against the function's memory size. So the limit here becomes the memory size less
        `resident_bytes` (the template's resident set when it parked), and the peak reported adds
        them back: Max Memory Used is the copy's whole footprint, and the copy can allocate only up
        to its memory size in all."""
        self.inherited_bytes = max(0, min(resident_bytes, self.memory_bytes - MIN_OWN_BYTES))
        if self.memory:
            limit = str(self.memory_bytes - self.inherited_bytes)
            _write(os.path.join(self.memory, "memory.limit_in_bytes"), limit)  # lowered before the
            if self.support.memsw:  # swap-inclusive one, which may never be below it
                _write(os.path.join(self.memory, "memory.memsw.limit_in_bytes"), limit)

    def lift_memory_limit(self) -> None:
        """No memory limit from now on (the swap-inclusive one first: it may never be below the
        other). For a parked SnapStart template: see runtime_api/snapstart.py."""
        if self.memory:
            if self.support.memsw:
                _write(os.path.join(self.memory, "memory.memsw.limit_in_bytes"), "-1")
            _write(os.path.join(self.memory, "memory.limit_in_bytes"), "-1")

    def directories(self) -> list[str]:
        return [d for d in (self.memory, self.pids, self.cpu) if d]

    def tasks_files(self) -> list[str]:
        """Where a process joins these cgroups, by writing `0` (itself) to each."""
        return [os.path.join(d, "tasks") for d in self.created]

    def join_commands(self) -> list[str]:
        """Shell commands by which the shim (sandbox.process.confined_argv) joins these cgroups."""
        return [f"echo 0 > {shlex.quote(tasks)}" for tasks in self.tasks_files()]

    # -- what the host reads -----------------------------------------------------------------------

    def oom_kills(self) -> int:
        """The memory cgroup's `oom_kill` counter (0 without a memory cgroup)."""
        if not self.memory:
            return 0
        try:
            for line in _read(os.path.join(self.memory, "memory.oom_control")).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def new_oom_kill(self) -> bool:
        """Did the kernel OOM-kill a process here since the last time this was asked?"""
        count = self.oom_kills()
        grown, self._oom_seen = count > self._oom_seen, max(count, self._oom_seen)
        return grown

    def peak_memory_mb(self) -> int | None:
        """The environment's peak memory (every process in it), in MB rounded up; remembered once
        the cgroup is gone. None without a memory cgroup."""
        if not self.memory:
            return None
        try:
            self._peak_bytes = max(self._peak_bytes, int(_read(os.path.join(self.memory, "memory.max_usage_in_bytes"))))
        except (OSError, ValueError):
            pass
        return -(-(self.inherited_bytes + self._peak_bytes) // (1024 * 1024)) if self._peak_bytes else None

    # -- orphans -----------------------------------------------------------------------------------

    def _directory(self) -> str | None:
        return next((d for d in self.directories() if d in self.created), None)

    def track(self) -> None:
        """Note the environment's processes (other than the runtime) and reap the ones noted before
        that have exited and were orphaned to us: a daemon a handler left behind is reaped when it
        ends, not kept as a zombie until its environment ends. Cheap: one read of cgroup.procs
        (the runtime and the processes already noted are not looked at again)."""
        directory = self._directory()
        if directory is not None:
            known = self._tracked.keys() | {self.runtime_pid}
            self._tracked.update(_member_pidfds(directory, known))
        self.reap_tracked()

    def reap_tracked(self) -> None:
        """Reap the noted processes that have exited (nothing to read while none was noted)."""
        for pid, fd in list(self._tracked.items()):
            if _reap_pidfd(fd):
                os.close(fd)
                del self._tracked[pid]

    # -- ending it ---------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every process in the environment, now (never waits). The ones killed are
        tracked, so `terminate` reaps them even if they have left the cgroup by then."""
        directory = self._directory()
        if directory is None:
            return
        for pid, fd in _member_pidfds(directory).items():
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            if pid != self.runtime_pid and pid not in self._tracked:
                self._tracked[pid] = fd
            else:
                os.close(fd)

    async def terminate(self) -> None:
        """Kill everything still in the environment, wait until it is empty and reap every member
        that was re-parented to us (the host is their subreaper). Call once the runtime is reaped."""
        directory = self._directory()
        if directory is not None:
            for _ in range(1000):  # each round kills what forked during the last; pids.max bounds them
                fds = _kill_members(directory)
                if not fds:
                    break
                try:
                    for fd in fds:
                        await trio.lowlevel.wait_readable(fd)  # readable once the process has exited
                    # Every member has exited, so whatever it orphaned has been re-parented to us.
                    for fd in fds:
                        _reap_pidfd(fd)
                finally:
                    for fd in fds:
                        os.close(fd)
        # Every process noted (killed by `kill`, or seen at an invocation's edge): once it has
        # exited for good it has left the cgroup (a dying process is no longer listed in
        # cgroup.procs but still keeps the cgroup busy), and if orphaned to us it is reaped here.
        try:
            for fd in self._tracked.values():
                await trio.lowlevel.wait_readable(fd)
            for fd in self._tracked.values():
                _reap_pidfd(fd)
        finally:
            for fd in self._tracked.values():
                os.close(fd)
            self._tracked.clear()
        self.peak_memory_mb()

    def remove(self, *, warn: bool = True) -> None:
        """Remove the (empty) cgroups; idempotent. The peak is read first."""
        if self.memory in self.created:
            self.peak_memory_mb()
        for directory in list(self.created):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if warn:
                    log.warning("cannot remove cgroup %s: %s", directory, exc.strerror)
                continue
            self.created.remove(directory)

    async def remove_when_empty(self) -> None:
        """`remove`, once `terminate` is done. A process of the tree that died on its own just as
        the tree was killed may still be on its way out (unlisted, yet keeping the cgroup busy):
        retry briefly rather than leave the cgroup behind."""
        delay = 0.001
        for _ in range(12):  # about 4 s in all
            self.remove(warn=False)
            if not self.created:
                return
            await trio.sleep(delay)
            delay *= 2
        self.remove()


def remove_stale(support: CgroupSupport) -> list[str]:
    """Empty and remove environment cgroups left by a lambdalet process that no longer exists
    (a crash, a SIGKILL); the ones of live lambdalet processes are left alone. Returns them."""
    removed = []
    for parent in support.directories():
        try:
            entries = os.listdir(parent)
        except OSError:
            continue
        for entry in entries:
            found = _NAME.match(entry)
            if found is None or os.path.exists(f"/proc/{found[1]}"):
                continue
            directory = os.path.join(parent, entry)
            if not os.path.isdir(directory):
                continue
            for _ in range(100):
                fds = _kill_members(directory)
                if not fds:
                    break
                try:
                    reaper.wait_exited(fds)
                finally:
                    for fd in fds:
                        os.close(fd)
            try:
                os.rmdir(directory)
                removed.append(directory)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("cannot remove stale cgroup %s: %s", directory, exc.strerror)
    return removed
