"""Per-environment cgroups: Lambda's memory, pids and CPU limits, OOM detection, peak memory, tree kill.

Each controller comes from the hierarchy the host gives it (cgroups(7)): v1 (a hierarchy per
controller, sandbox.cgroupv1), v2 (one directory for all, sandbox.cgroupv2), or a mix of the two.
Where neither is writable, the memory guard is RLIMIT_DATA (sandbox.host says so). An environment
gets, where each is writable, a cgroup `lambdalet-<host pid>-<n>` beside the host's own (on v2,
beside the leaf the host moved itself into):

* memory: a limit = the function's memory, swap included; its OOM-kill counter tells an OOM kill
  from any other SIGKILL, and its peak is REPORT's "Max Memory Used" (the whole tree's, children
  and page cache included);
* pids: `pids.max` (DEFAULT_PIDS_MAX);
* with the `lambda` CPU model only, cpu: a CFS quota proportional to memory, as Lambda allots CPU
  (1,769 MB = one vCPU; `lambda_cpu_quota_us`). The default (`host`) limits no CPU: the runtime
  shares the host's CPUs.

The tree is killed through the cgroup, never by walking a process's children: on v2 `cgroup.kill`
first, then (both) SIGKILL through a pidfd (no pid reuse) to every member listed in `cgroup.procs`,
repeated until it is empty (what forks meanwhile is caught by the next round; the pids limit
bounds them). The pidfds are what lets the host, the subreaper, reap the members orphaned to it.

The runtime joins its cgroups before it execs: it is spawned through a `/bin/sh` shim that writes
`0` (itself) into each cgroup's join file (v1 `tasks`, v2 `cgroup.procs`) and then execs the
runtime (Popen's preexec_fn is not safe in a threaded program; writing the pid after spawn would
leave the runtime unconfined for a moment). A SnapStart copy joins the same files.

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
import signal
from dataclasses import dataclass

import trio

from . import cgroupfs, cgroupv1, cgroupv2, reaper
from .cgroupfs import kill_members, member_pidfds, reap_pidfd

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
    """Where this host process can create environment cgroups (None: not writable here). A
    controller's directory is its v1 hierarchy's, or the one v2 directory (`unified`) for every
    controller the host gives through v2."""

    memory: str | None = None  # the directory environment cgroups are created in
    pids: str | None = None
    memsw: bool = False  # swap can be limited too (v1 memory.memsw.*, v2 memory.swap.max)
    cpu: str | None = None  # for the `lambda` CPU model only
    unified: str | None = None  # the v2 directory, where some controller is on v2 and usable
    v2_controllers: frozenset[str] = frozenset()  # which of memory, pids, cpu the host has on v2
    v2_problem: str | None = None  # why v2 cannot be used, where the host has controllers there

    @property
    def any(self) -> bool:
        return bool(self.memory or self.pids)

    def directories(self) -> list[str]:
        return list(dict.fromkeys(d for d in (self.memory, self.pids, self.cpu) if d))

    def hierarchy(self, controller: str) -> str:
        return "cgroup v2" if controller in self.v2_controllers else "cgroup v1"

    def missing(self) -> list[str]:
        """One line per missing protection, for the start-up warnings; one line in all where the
        host's memory controller is on v2 and nothing there is usable."""
        if not self.any and "memory" in self.v2_controllers:
            return [f"no cgroup is writable ({self.v2_problem or 'cgroup v2'}): RLIMIT_DATA is the memory guard, "
                    "with no Runtime.OutOfMemory, no measured Max Memory Used, no process limit and no lambda CPU "
                    "model, and a timeout kills the runtime's process group only; run lambdalet as root, or in "
                    f"a delegated cgroup: {cgroupv2.DELEGATE_HINT}"]
        lines = []
        if not self.memory:
            lines.append(f"no memory limit through cgroups ({self.hierarchy('memory')} memory controller not "
                         "writable): RLIMIT_DATA is the memory guard, an out-of-memory kill is not detected and "
                         "Max Memory Used is the runtime's own peak, not its children's")
        if not self.pids:
            lines.append(f"no process limit ({self.hierarchy('pids')} pids controller not writable): a fork bomb "
                         "is not contained")
        if not self.any:
            lines.append("no cgroup at all: environments are killed by process group, so a process that "
                         "leaves it (setsid) outlives its environment")
        return lines


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
    """Probe, once at start-up, which hierarchy gives each controller and where this process may
    create cgroups with it: v1 where the controller's v1 hierarchy is mounted, else v2 (a
    controller is in one or the other, never both). On v2 this may move the process into a leaf
    of its own (sandbox.cgroupv2.place)."""
    mounts = cgroupfs.mounts(cgroupfs.read_or_empty("/proc/self/mountinfo"))
    own = cgroupfs.own_paths(cgroupfs.read_or_empty("/proc/self/cgroup"))
    found: dict[str, str | None] = {}
    for key in cgroupv2.WANTED:
        directory = mounts.directory(key, own[key]) if key in mounts.v1 and key in own else None
        found[key] = directory if directory and _probe(directory, cgroupv1.REQUIRED[key]) else None
    memsw = bool(found["memory"]) and cgroupv1.swap_limit_exists(found["memory"])
    on_v2 = frozenset(key for key in cgroupv2.WANTED if key not in mounts.v1)
    here = mounts.directory("", own[""]) if mounts.v2 is not None and "" in own else None
    if mounts.v2 is not None:
        on_v2 &= cgroupfs.controllers(mounts.v2[0])
    if here is None or mounts.v2 is None or not on_v2:
        return CgroupSupport(found["memory"], found["pids"], memsw, found["cpu"])
    placement = cgroupv2.place(mounts.v2[0], here, on_v2, PREFIX)
    unified = placement.directory
    usable = frozenset(key for key in placement.enabled
                       if unified is not None and _probe(unified, cgroupv2.REQUIRED[key]))
    problem = placement.problem
    if unified is None or not usable:
        return CgroupSupport(found["memory"], found["pids"], memsw, found["cpu"], None, on_v2,
                             problem or f"no controller could be enabled in {unified}")
    for key in usable:
        found[key] = unified
    if "memory" in usable:
        memsw = _probe(unified, "memory.swap.max")
    return CgroupSupport(found["memory"], found["pids"], memsw, found["cpu"], unified, on_v2, problem)


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
        # The v2 directory (every controller on v2 shares it), else None.
        self.unified = os.path.join(support.unified, self.name) if support.unified else None
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
                self._files(self.memory).limit_memory(self.memory, memory_mb * 1024 * 1024, support.memsw)
            if self.pids:
                self._files(self.pids).limit_pids(self.pids, pids_max)
            if self.cpu:
                self._files(self.cpu).limit_cpu(self.cpu, cpu_quota_us, CPU_PERIOD_US)
        except BaseException:
            self.remove()
            raise

    def __repr__(self) -> str:
        return f"<EnvironmentCgroup {self.name}>"

    def _files(self, directory: str):
        """The module that knows the files of `directory`'s hierarchy."""
        return cgroupv2 if directory == self.unified else cgroupv1

    def inherit(self, resident_bytes: int) -> None:
        """For a SnapStart copy, before it joins: the pages it shares with its template are charged
        to the template's cgroup, not to this one, yet on Lambda a restored snapshot's memory counts
        against the function's memory size. So the limit here becomes the memory size less
        `resident_bytes` (the template's resident set when it parked), and the peak reported adds
        them back: Max Memory Used is the copy's whole footprint, and the copy can allocate only up
        to its memory size in all. It may be said again, with another template's resident set.
        Raises OSError if the limit cannot be written."""
        inherited = max(0, min(resident_bytes, self.memory_bytes - MIN_OWN_BYTES))
        if self.memory and inherited != self.inherited_bytes:
            self._files(self.memory).limit_memory(self.memory, self.memory_bytes - inherited, self.support.memsw,
                                                  rising=inherited < self.inherited_bytes)
        self.inherited_bytes = inherited

    def lift_memory_limit(self) -> None:
        """No memory limit from now on. For a parked SnapStart template: see runtime_api/snapstart.py."""
        if self.memory:
            self._files(self.memory).lift_memory_limit(self.memory, self.support.memsw)

    def directories(self) -> list[str]:
        """Each cgroup once (on v2 one directory holds every controller)."""
        return list(dict.fromkeys(d for d in (self.memory, self.pids, self.cpu) if d))

    def tasks_files(self) -> list[str]:
        """Where a process joins these cgroups, by writing `0` (itself) to each."""
        return [os.path.join(d, self._files(d).JOIN_FILE) for d in self.created]

    def join_commands(self) -> list[str]:
        """Shell commands by which the shim (sandbox.process.confined_argv) joins these cgroups."""
        return [f"echo 0 > {shlex.quote(tasks)}" for tasks in self.tasks_files()]

    # -- what the host reads -----------------------------------------------------------------------

    def oom_kills(self) -> int:
        """The memory cgroup's OOM-kill counter (0 without a memory cgroup)."""
        return self._files(self.memory).oom_kills(self.memory) if self.memory else 0

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
        if self.memory in self.created:
            self._peak_bytes = max(self._peak_bytes, self._files(self.memory).peak_bytes(self.memory))
        return -(-(self.inherited_bytes + self._peak_bytes) // (1024 * 1024)) if self._peak_bytes else None

    # -- orphans -----------------------------------------------------------------------------------

    def _directory(self) -> str | None:
        return next((d for d in self.directories() if d in self.created), None)

    def track(self) -> None:
        """Note the environment's processes (other than the runtime) and reap the ones noted before
        that have exited and were orphaned to us: a daemon a handler left behind is reaped when it
        ends, not kept as a zombie until its environment ends. Cheap: one read of cgroup.procs
        (the runtime and the processes already noted are not looked at again; on a v2 kernel before
        5.19, a sample of the memory in use, for the peak)."""
        directory = self._directory()
        if directory is not None:
            known = self._tracked.keys() | {self.runtime_pid}
            self._tracked.update(member_pidfds(directory, known))
            if self.memory == self.unified:
                self.peak_memory_mb()
        self.reap_tracked()

    def reap_tracked(self) -> None:
        """Reap the noted processes that have exited (nothing to read while none was noted)."""
        for pid, fd in list(self._tracked.items()):
            if reap_pidfd(fd):
                os.close(fd)
                del self._tracked[pid]

    # -- ending it ---------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every process in the environment, now (never waits). The ones killed are
        tracked, so `terminate` reaps them even if they have left the cgroup by then."""
        directory = self._directory()
        if directory is None:
            return
        members = member_pidfds(directory)
        self._kill_unified()
        for pid, fd in members.items():
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            if pid != self.runtime_pid and pid not in self._tracked:
                self._tracked[pid] = fd
            else:
                os.close(fd)

    def _kill_unified(self) -> None:
        if self.unified in self.created:
            try:
                cgroupv2.kill(self.unified)
            except OSError as exc:
                log.warning("cannot kill cgroup %s: %s", self.unified, exc.strerror)

    async def terminate(self) -> None:
        """Kill everything still in the environment, wait until it is empty and reap every member
        that was re-parented to us (the host is their subreaper). Call once the runtime is reaped."""
        directory = self._directory()
        if directory is not None:
            for _ in range(1000):  # each round kills what forked during the last; pids.max bounds them
                fds = kill_members(directory)
                self._kill_unified()
                if not fds:
                    break
                try:
                    for fd in fds:
                        await trio.lowlevel.wait_readable(fd)  # readable once the process has exited
                    # Every member has exited, so whatever it orphaned has been re-parented to us.
                    for fd in fds:
                        reap_pidfd(fd)
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
                reap_pidfd(fd)
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
            if not (self.unified in self.created and cgroupv2.populated(self.unified)):
                self.remove(warn=False)
                if not self.created:
                    return
            await trio.sleep(delay)
            delay *= 2
        self.remove()


def remove_stale(support: CgroupSupport) -> list[str]:
    """Empty and remove environment cgroups left by a lambdalet process that no longer exists
    (a crash, a SIGKILL; on v2 also the leaf it had moved itself into); the ones of live
    lambdalet processes are left alone. Returns them."""
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
                fds = kill_members(directory)
                if parent == support.unified:
                    try:
                        cgroupv2.kill(directory)
                    except OSError:
                        pass
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
