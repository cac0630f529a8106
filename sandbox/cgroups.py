"""Per-environment cgroups: Lambda's memory and pids limits, OOM detection, peak memory, tree kill.

What this machine kind offers (../shared/reference/sandbox-primitives.md, section 2): cgroup v1
memory and pids hierarchies writable by root, and a v2 `unified` hierarchy with no controllers
but with `cgroup.kill`. An environment gets, where each is writable:

* `memory:<host's own memory cgroup>/lambdalet-<host pid>-<n>`: `memory.limit_in_bytes` (and
  `memory.memsw.limit_in_bytes`) = the function's memory; its `oom_kill` counter tells an OOM kill
  from any other SIGKILL, and `memory.max_usage_in_bytes` is REPORT's "Max Memory Used" (the whole
  tree's peak, children and page cache included, as Lambda counts it);
* `pids:<host's own pids cgroup>/lambdalet-<host pid>-<n>`: `pids.max` (DEFAULT_PIDS_MAX);
* `unified:<host's own v2 cgroup>/lambdalet-<host pid>-<n>`: `cgroup.kill`, which kills every
  process in it at once, a setsid daemon included, and keeps killing what forks meanwhile.

Nothing is ever killed by walking a process's children: the kill is `cgroup.kill`, or without
it a SIGKILL through a pidfd to every member listed in the cgroup, repeated until it is empty.

The runtime joins its cgroups before it execs: it is spawned through a `/bin/sh` shim that
writes its own pid into each `cgroup.procs` and then execs the runtime (Popen's preexec_fn is not
safe in a threaded program; writing the pid after spawn would leave the runtime unconfined for a
moment). The shim costs one exec of dash, about 1 ms (benchmarks/sandbox.py).

The host's pid in the name tells whose a cgroup is: at start-up the ones whose owner is dead (a
crashed earlier run) are emptied and removed (`remove_stale`).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import shlex
import select
import signal
from dataclasses import dataclass

import trio

from . import reaper

log = logging.getLogger("lambdalet")

PREFIX = "lambdalet-"
# Lambda has no documented process limit; 1024 (Lambda's own per-environment figure for
# processes/threads is of that order) stops a fork bomb long before the machine suffers.
DEFAULT_PIDS_MAX = 1024
_NAME = re.compile(r"lambdalet-(\d+)-[\w.-]+$")
_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Where this host process can create environment cgroups (None: not writable here)."""

    memory: str | None = None  # the directory environment cgroups are created in
    pids: str | None = None
    unified: str | None = None  # a v2 directory whose children have cgroup.kill
    memsw: bool = False  # memory.memsw.* exists (swap accounting)

    @property
    def any(self) -> bool:
        return bool(self.memory or self.pids or self.unified)

    def directories(self) -> list[str]:
        return [d for d in (self.unified, self.memory, self.pids) if d]

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
        elif not self.unified:
            lines.append("no cgroup.kill (cgroup v2 not writable): environments are killed member by member")
        return lines


def _mount_points() -> dict[str, str]:
    """v1 controller name (and "unified" for v2) -> where its hierarchy is mounted."""
    points: dict[str, str] = {}
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                _, where, kind, options, *_ = line.split()
                if kind == "cgroup2":
                    points.setdefault("unified", where)
                elif kind == "cgroup":
                    for option in options.split(","):
                        points.setdefault(option, where)
    except OSError:
        pass
    return points


def _own_paths() -> dict[str, str]:
    """The host's own cgroup path per v1 controller, and "unified" for v2 (/proc/self/cgroup)."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as own:
            for line in own:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if not controllers:
                    paths["unified"] = path
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
    for key, required in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max"), ("unified", "cgroup.kill")):
        where = mounts.get(key)
        if where is None or key not in own:
            found[key] = None
            continue
        directory = os.path.join(where, own[key].lstrip("/"))
        found[key] = directory if _probe(directory, required) else None
    memsw = bool(found["memory"]) and os.path.exists(os.path.join(found["memory"], "memory.memsw.limit_in_bytes"))
    return CgroupSupport(found["memory"], found["pids"], found["unified"], memsw)


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


def _pidfds(pids: list[int]) -> list[int]:
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            pass  # already gone
    return fds


def _kill_members(directory: str) -> list[int]:
    """SIGKILL every member of the cgroup through pidfds (no pid can be reused under us);
    returns the pidfds, which the caller closes."""
    fds = _pidfds(_members(directory))
    for fd in fds:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
    return fds


def _wait_exited(fds: list[int], timeout_ms: int = 1000) -> None:
    """Block (briefly: start-up only) until every pidfd's process has exited."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    pending = set(fds)
    while pending:
        ready = poller.poll(timeout_ms)
        if not ready:
            return
        for fd, _ in ready:
            pending.discard(fd)
            poller.unregister(fd)


def _reap_pidfd(fd: int) -> None:
    """Reap the process if it became our child (re-parented to us, the subreaper); else leave it
    to its parent (ECHILD). Never touches a process that was not a member of our cgroup."""
    try:
        os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        pass


class EnvironmentCgroup:
    """One environment's cgroups. Create it before the runtime is spawned, `terminate` it once the
    runtime is reaped, read its OOM counter and peak, then `remove` it."""

    def __init__(self, support: CgroupSupport, *, memory_mb: int, pids_max: int = DEFAULT_PIDS_MAX) -> None:
        self.support = support
        self.name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.memory = os.path.join(support.memory, self.name) if support.memory else None
        self.pids = os.path.join(support.pids, self.name) if support.pids else None
        self.unified = os.path.join(support.unified, self.name) if support.unified else None
        self._peak_bytes = 0
        self._oom_seen = 0
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
        except BaseException:
            self.remove()
            raise

    def __repr__(self) -> str:
        return f"<EnvironmentCgroup {self.name}>"

    def directories(self) -> list[str]:
        return [d for d in (self.unified, self.memory, self.pids) if d]

    def join_commands(self) -> list[str]:
        """Shell commands by which the shim (sandbox.process.confined_argv) joins these cgroups."""
        return [f"echo $$ > {shlex.quote(os.path.join(d, 'cgroup.procs'))}" for d in self.created]

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
        return -(-self._peak_bytes // (1024 * 1024)) if self._peak_bytes else None

    # -- ending it ---------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL every process in the environment, now (never waits)."""
        if self.unified and self.unified in self.created:
            try:
                _write(os.path.join(self.unified, "cgroup.kill"), "1")
                return
            except OSError:
                pass
        for directory in (self.memory, self.pids):
            if directory and directory in self.created:
                for fd in _kill_members(directory):
                    os.close(fd)
                return

    async def terminate(self) -> None:
        """Kill everything still in the environment and wait until it is empty, reaping every
        member that was re-parented to us (the host is their subreaper)."""
        directory = next((d for d in self.directories() if d in self.created), None)
        if directory is None:
            return
        for _ in range(1000):  # each round kills what the last one missed; a fork bomb is bounded by pids.max
            fds = _kill_members(directory)
            self.kill()  # cgroup.kill also gets what forks meanwhile
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
        # Members that exited before we looked, and were orphaned to us, are zombies of ours.
        reaper.reap_orphans(lambda pid: reaper.in_cgroup(pid, self.name))
        self.peak_memory_mb()

    def remove(self) -> None:
        """Remove the (empty) cgroups; idempotent. The OOM counter and peak are read first."""
        if self.memory in self.created:
            self.peak_memory_mb()
        for directory in list(self.created):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove cgroup %s: %s", directory, exc.strerror)
                continue
            self.created.remove(directory)


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
            if os.path.exists(os.path.join(directory, "cgroup.kill")):
                try:
                    _write(os.path.join(directory, "cgroup.kill"), "1")
                except OSError:
                    pass
            for _ in range(100):
                fds = _kill_members(directory)
                if not fds:
                    break
                try:
                    _wait_exited(fds)
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
