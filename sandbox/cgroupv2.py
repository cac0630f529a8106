"""cgroup v2's files for one environment's cgroup, and where lambdalet may make them (the
kernel's Documentation/admin-guide/cgroup-v2.rst).

One directory holds every controller:
* memory: `memory.max`, with `memory.swap.max` 0 so swap cannot stretch it; `oom_kill` of
  `memory.events`; `memory.peak` (5.19+) for Max Memory Used, else `memory.current` sampled each
  time the peak is read;
* pids: `pids.max`; cpu: `cpu.max` ("quota period");
* `cgroup.kill` (5.14+) kills every member at once, forks racing it included; before, the members
  are frozen (`cgroup.freeze`), killed, then thawed; `cgroup.events` `populated` says it is empty.

A process joins by writing `0` to `cgroup.procs` (v2 has no per-thread `tasks`).

Where (`place`): v2 allows processes only in leaves ("no internal processes"), and a cgroup's
controllers reach its children only once enabled in its `cgroup.subtree_control`. lambdalet uses the
cgroup it was started in: root anywhere, or any user in a subtree delegated to it (`systemd-run
--user --scope -p Delegate=yes`, a container with its own cgroup namespace). When it shares that
cgroup with nobody, it first moves itself into a leaf of its own (`lambdalet-<pid>-host`) and
enables the controllers for its environments, which are made beside that leaf; `release` undoes
both at exit. Root whose cgroup other processes share uses the hierarchy's root instead (the root
cgroup is exempt from the rule), unless that is only a cgroup namespace's root (`is_root`).
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import time
from dataclasses import dataclass

from .cgroupfs import controllers, members, read, read_key, write

JOIN_FILE = "cgroup.procs"
WANTED = ("memory", "pids", "cpu")
REQUIRED = {"memory": "memory.max", "pids": "pids.max", "cpu": "cpu.max"}
HOST_LEAF = "host"  # lambdalet-<pid>-host: the leaf lambdalet moves itself into
DELEGATE_HINT = "systemd-run --user --scope -p Delegate=yes lambdalet serve ..."


@dataclass(frozen=True, slots=True)
class Placement:
    """Where environment cgroups are made on v2, with which controllers; or why nowhere."""

    directory: str | None
    enabled: frozenset[str] = frozenset()
    problem: str | None = None


def _writable(directory: str) -> bool:
    return all(os.access(os.path.join(directory, name), os.W_OK)
               for name in ("", "cgroup.procs", "cgroup.subtree_control"))


def _enable(directory: str, wanted: frozenset[str]) -> frozenset[str]:
    """Enable `wanted` for `directory`'s children, one by one (one refused leaves the others)."""
    already = frozenset(read(os.path.join(directory, "cgroup.subtree_control")).split())
    enabled = set(already & wanted)
    for controller in sorted(wanted - already):
        try:
            write(os.path.join(directory, "cgroup.subtree_control"), f"+{controller}")
        except OSError:
            continue
        enabled.add(controller)
    return frozenset(enabled)


def is_root(directory: str) -> bool:
    """Whether `directory` is the hierarchy's real root, which may hold processes and enable
    controllers at once. The root of a cgroup namespace (a container's "/") is not: like any other
    cgroup it has a `cgroup.type`, which the real root lacks."""
    return not os.path.exists(os.path.join(directory, "cgroup.type"))


def place(mount_root: str, here: str, wanted: frozenset[str], prefix: str) -> Placement:
    """Make `here` (this process's own v2 cgroup) ready for environment cgroups with the
    `wanted` controllers, as the module's docstring says; Placement.problem says why not."""
    fallback = os.geteuid() == 0 and here != mount_root and is_root(mount_root)
    offered = controllers(here) & wanted
    if not offered:
        return Placement(None, problem=f"no controller of {', '.join(sorted(wanted))} is delegated to {here}")
    if not _writable(here):
        if fallback:
            return place(mount_root, mount_root, wanted, prefix)
        return Placement(None, problem=f"{here} is not writable by this user (not delegated)")
    if is_root(here):
        return Placement(here, _enable(here, offered))
    others = [pid for pid in members(here) if pid != os.getpid()]
    if others:
        if fallback:
            return place(mount_root, mount_root, wanted, prefix)
        return Placement(None, problem=f"{here} holds other processes too ({len(others)}), so lambdalet "
                                       "cannot enable controllers there")
    before = frozenset(read(os.path.join(here, "cgroup.subtree_control")).split())
    if os.getpid() in members(here):
        leaf = os.path.join(here, f"{prefix}{os.getpid()}-{HOST_LEAF}")
        try:
            os.makedirs(leaf, exist_ok=True)
            write(os.path.join(leaf, "cgroup.procs"), "0")
        except OSError as exc:
            return Placement(None, problem=f"cannot move into a leaf cgroup of its own: {exc.strerror or exc}")
        enabled = _enable(here, offered)
        atexit.register(release, here, leaf, enabled - before)
        return Placement(here, enabled)
    return Placement(here, _enable(here, offered))


def release(here: str, leaf: str, enabled: frozenset[str]) -> None:
    """At exit: give back what `place` changed, once no environment cgroup is left. Best effort:
    a leaf left behind is removed at the next start-up as stale."""
    try:
        if any(entry.is_dir() and entry.path != leaf for entry in os.scandir(here)):
            return  # another lambdalet (or the user) uses it now
        for controller in sorted(enabled):
            write(os.path.join(here, "cgroup.subtree_control"), f"-{controller}")
        write(os.path.join(here, "cgroup.procs"), "0")
        os.rmdir(leaf)
    except OSError:
        pass


def swap_limit_exists(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "memory.swap.max"))


def limit_memory(directory: str, limit_bytes: int, swap: bool, *, rising: bool = False) -> None:
    """The memory limit, up or down (`rising` matters only on v1); with `swap` accounting, no swap
    at all (memory.swap.max 0: on v2 the two limits are independent)."""
    write(os.path.join(directory, "memory.max"), str(limit_bytes))
    if swap:
        write(os.path.join(directory, "memory.swap.max"), "0")


def lift_memory_limit(directory: str, swap: bool) -> None:
    write(os.path.join(directory, "memory.max"), "max")


def limit_pids(directory: str, pids_max: int) -> None:
    write(os.path.join(directory, "pids.max"), str(pids_max))


def limit_cpu(directory: str, quota_us: int, period_us: int) -> None:
    write(os.path.join(directory, "cpu.max"), f"{quota_us} {period_us}")


def oom_kills(directory: str) -> int:
    return read_key(os.path.join(directory, "memory.events"), "oom_kill") or 0


def peak_bytes(directory: str) -> int:
    """`memory.peak`, or on kernels before 5.19 `memory.current` now (the caller keeps the highest)."""
    for name in ("memory.peak", "memory.current"):
        try:
            return int(read(os.path.join(directory, name)))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return 0
    return 0


def populated(directory: str) -> bool:
    """Whether any process (a dying one included) is still in the cgroup or below it."""
    return read_key(os.path.join(directory, "cgroup.events"), "populated") != 0


def kill(directory: str) -> None:
    """SIGKILL every process in the cgroup: `cgroup.kill`, or where the kernel has none (before
    5.14) freeze, kill each member, thaw (a frozen cgroup cannot fork meanwhile)."""
    try:
        write(os.path.join(directory, "cgroup.kill"), "1")
        return
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise
    freeze = os.path.join(directory, "cgroup.freeze")
    try:
        write(freeze, "1")
    except OSError:
        freeze = ""
    try:
        if freeze:  # the kernel says `frozen 1` once every member is stopped; bounded, never blocking long
            for _ in range(100):
                if read_key(os.path.join(directory, "cgroup.events"), "frozen") == 1:
                    break
                time.sleep(0.001)
        for pid in members(directory):
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        if freeze:
            write(freeze, "0")
