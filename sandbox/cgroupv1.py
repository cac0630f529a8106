"""cgroup v1's files for one environment's cgroup, one hierarchy per controller (cgroups(7),
the kernel's Documentation/admin-guide/cgroup-v1/memory.rst).

* memory: `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, so swap cannot stretch it);
  the `oom_kill` counter of `memory.oom_control`; `memory.max_usage_in_bytes`, the peak of every
  process in it, children and page cache included;
* pids: `pids.max`;
* cpu: a CFS quota (`cpu.cfs_quota_us` per `cpu.cfs_period_us`).

A process joins by writing `0` (itself) to `tasks`: that moves one thread, the shim's only one,
which the kernel does without the global cgroup_threadgroup_rwsem that `cgroup.procs` takes for
writing (benchmarks/results/costs.md, "Joining a memory and a pids cgroup").
"""

from __future__ import annotations

import os

from .cgroupfs import read, read_key, write

JOIN_FILE = "tasks"
# What a directory must hold for each controller to be usable there.
REQUIRED = {"memory": "memory.limit_in_bytes", "pids": "pids.max", "cpu": "cpu.cfs_quota_us"}


def swap_limit_exists(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "memory.memsw.limit_in_bytes"))


def limit_memory(directory: str, limit_bytes: int, swap: bool, *, rising: bool = False) -> None:
    """The memory limit (from unlimited, or `rising` from a lower one). The swap-inclusive limit may
    never be below it (the kernel refuses with EINVAL), so it moves first when the limit rises and
    second when it falls."""
    limit = os.path.join(directory, "memory.limit_in_bytes")
    memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
    if swap and rising:
        write(memsw, str(limit_bytes))
    write(limit, str(limit_bytes))
    if swap and not rising:
        write(memsw, str(limit_bytes))


def lift_memory_limit(directory: str, swap: bool) -> None:
    """No memory limit (the swap-inclusive one first, for the same reason)."""
    if swap:
        write(os.path.join(directory, "memory.memsw.limit_in_bytes"), "-1")
    write(os.path.join(directory, "memory.limit_in_bytes"), "-1")


def limit_pids(directory: str, pids_max: int) -> None:
    write(os.path.join(directory, "pids.max"), str(pids_max))


def limit_cpu(directory: str, quota_us: int, period_us: int) -> None:
    write(os.path.join(directory, "cpu.cfs_period_us"), str(period_us))
    write(os.path.join(directory, "cpu.cfs_quota_us"), str(quota_us))


def oom_kills(directory: str) -> int:
    return read_key(os.path.join(directory, "memory.oom_control"), "oom_kill") or 0


def peak_bytes(directory: str) -> int:
    try:
        return int(read(os.path.join(directory, "memory.max_usage_in_bytes")))
    except (OSError, ValueError):
        return 0
