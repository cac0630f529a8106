"""`lambdalet doctor --host`: what this machine gives lambdalet's environments, found the way
`lambdalet serve` finds it at start-up (sandbox.host), for real: the cgroup mode (v1, v2 or a
hybrid of the two), each controller's hierarchy and whether this user may create cgroups with it,
and what each isolation level will get and lack here.

    $ lambdalet doctor --host
    cgroups: v2 (cgroup2 at /sys/fs/cgroup)
      memory   cgroup v2  usable  /sys/fs/cgroup/user.slice/.../lambdalet.scope
      pids     cgroup v2  usable  ...
      cpu      cgroup v2  usable  ...
    isolation none: plain processes, each runtime in a process group of its own, no limits
    isolation standard:
      gets   memory limit through cgroup v2 (Runtime.OutOfMemory, a measured Max Memory Used)
      ...
"""

from __future__ import annotations

import msgspec

from . import cgroupfs, cgroups, host
from .cgroups import DEFAULT_PIDS_MAX


class Controller(msgspec.Struct):
    name: str
    hierarchy: str | None  # "cgroup v1", "cgroup v2", or None: the kernel has it nowhere mounted
    usable: bool
    where: str | None = None  # the directory environment cgroups are made in
    problem: str | None = None


class Level(msgspec.Struct):
    isolation: str
    gets: list[str]
    lacks: list[str]


class HostReport(msgspec.Struct):
    cgroup_mode: str  # v1, v2, hybrid, none
    cgroup2_mount: str | None
    controllers: list[Controller]
    levels: list[Level]


def cgroup_mode(mounts: cgroupfs.Mounts) -> str:
    """v2 when only cgroup2 is mounted, v1 when only v1 hierarchies are, hybrid when both are
    (whether or not the v2 one has controllers), none without either."""
    v1 = any(controller in mounts.v1 for controller in ("memory", "pids", "cpu", "cpuset", "io", "blkio"))
    if mounts.v2 is not None:
        return "hybrid" if v1 else "v2"
    return "v1" if v1 else "none"


def diagnose() -> HostReport:
    mounts = cgroupfs.mounts(cgroups._read_or_empty("/proc/self/mountinfo"))
    support = host.support()
    on_v2 = cgroupfs.controllers(mounts.v2[0]) if mounts.v2 is not None else frozenset()
    found = []
    for name in ("memory", "pids", "cpu"):
        hierarchy = "cgroup v1" if name in mounts.v1 else "cgroup v2" if name in on_v2 else None
        where = getattr(support, name)
        problem = None
        if where is None:
            problem = ("the kernel has no such controller mounted" if hierarchy is None
                       else support.v2_problem or "not writable by this user" if hierarchy == "cgroup v2"
                       else "not writable by this user")
        found.append(Controller(name, hierarchy, where is not None, where, problem))
    return HostReport(cgroup_mode(mounts), mounts.v2[0] if mounts.v2 else None, found, _levels(support))


def _levels(support: cgroups.CgroupSupport) -> list[Level]:
    standard: list[str] = []
    lacks: list[str] = []
    if support.memory:
        standard.append(f"memory limit through {support.hierarchy('memory')} (Runtime.OutOfMemory, a measured "
                        "Max Memory Used)")
    else:
        lacks.append("memory cgroup: RLIMIT_DATA is the memory guard (MemoryError, not Runtime.OutOfMemory)")
    if support.pids:
        standard.append(f"pids limit {DEFAULT_PIDS_MAX} through {support.hierarchy('pids')}")
    else:
        lacks.append("process limit: a fork bomb is not contained")
    if support.any:
        standard.append("a timeout kills every process of the environment's cgroup")
    else:
        lacks.append("cgroup: a timeout kills the runtime's process group (a setsid daemon outlives it)")
    if support.cpu:
        standard.append(f"--cpu-model lambda through {support.hierarchy('cpu')}")
    else:
        lacks.append("--cpu-model lambda: no writable cpu controller")
    problem = host.mount_namespace_problem()
    if problem is None:
        standard.append("a private /tmp, the code read-only at /var/task")
    else:
        lacks.append(f"private /tmp and /var/task: {problem}")
    strict = host.strict_support()
    extra, extra_lacks = [], []
    if strict.netns:
        extra.append("a network namespace of its own, the Runtime API at 127.0.0.1:9001")
    else:
        extra_lacks.append(f"network namespace: {strict.netns_problem or 'no exec helper runs here'}")
    if strict.seccomp_problem is None:
        extra.append("the seccomp deny-list, no_new_privs")
    else:
        extra_lacks.append(f"seccomp deny-list: {strict.seccomp_problem}")
    return [Level("none", ["plain processes, each runtime in a process group of its own"], ["limits", "private /tmp"]),
            Level("standard", standard, lacks),
            Level("strict", ["what standard gets", *extra], [*lacks, *extra_lacks])]


def render(report: HostReport) -> str:
    mount = f" (cgroup2 at {report.cgroup2_mount})" if report.cgroup2_mount else ""
    lines = [f"cgroups: {report.cgroup_mode}{mount}"]
    for controller in report.controllers:
        state = f"usable  {controller.where}" if controller.usable else f"no      {controller.problem}"
        lines.append(f"  {controller.name:<8} {controller.hierarchy or 'absent':<10} {state}")
    for level in report.levels:
        lines.append(f"isolation {level.isolation}:")
        lines += [f"  gets   {item}" for item in level.gets]
        lines += [f"  lacks  {item}" for item in level.lacks]
    return "\n".join(lines)
