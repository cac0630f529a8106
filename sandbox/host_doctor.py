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
    mounts = cgroupfs.mounts(cgroupfs.read_or_empty("/proc/self/mountinfo"))
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
    problem = host.mount_namespace_problem()
    strict = host.strict_support()
    # (has it, what it gets, what it lacks otherwise), for standard and then what strict adds.
    standard = [
        (bool(support.memory), f"memory limit through {support.hierarchy('memory')} (Runtime.OutOfMemory, a measured "
         "Max Memory Used)", "memory cgroup: RLIMIT_DATA is the memory guard (MemoryError, not Runtime.OutOfMemory)"),
        (bool(support.pids), f"pids limit {DEFAULT_PIDS_MAX} through {support.hierarchy('pids')}",
         "process limit: a fork bomb is not contained"),
        (support.any, "a timeout kills every process of the environment's cgroup",
         "cgroup: a timeout kills the runtime's process group (a setsid daemon outlives it)"),
        (bool(support.cpu), f"--cpu-model lambda through {support.hierarchy('cpu')}",
         "--cpu-model lambda: no writable cpu controller"),
        (problem is None, "a private /tmp, the code read-only at /var/task", f"private /tmp and /var/task: {problem}"),
    ]
    added = [
        (strict.netns, "a network namespace of its own, the Runtime API at 127.0.0.1:9001",
         f"network namespace: {strict.netns_problem or 'no exec helper runs here'}"),
        (strict.seccomp_problem is None, "the seccomp deny-list, no_new_privs",
         f"seccomp deny-list: {strict.seccomp_problem}"),
    ]
    lacks = [lacking for has, _, lacking in standard if not has]
    return [Level("none", ["plain processes, each runtime in a process group of its own"], ["limits", "private /tmp"]),
            Level("standard", [gets for has, gets, _ in standard if has], lacks),
            Level("strict", ["what standard gets", *(gets for has, gets, _ in added if has)],
                  [*lacks, *(lacking for has, _, lacking in added if not has)])]


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
