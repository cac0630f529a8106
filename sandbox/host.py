"""What the host process sets up once, at start-up of `lambdalet serve`, `lambdalet-rie` or an
embedding `Server`: it becomes the subreaper of everything it starts, decides the isolation level
its environments get (`isolation`), and (when limits are wanted) finds which cgroups it may use,
removes the ones a crashed earlier run left behind and says, once, which protection is missing
(as Docker warns), never failing because of it.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import threading

from . import cgroups, netns, reaper, seccomp, userns
from .cgroups import CpuModel
from .isolation import MOUNT_POINTS, TASK_ROOT, Isolation, tools
from .strict import StrictSupport, find_helper

log = logging.getLogger("lambdalet")

_lock = threading.Lock()  # two embedding Servers may start in two threads
_support: cgroups.CgroupSupport | None = None
_warned = False
_said: set[str] = set()
_mount_problem: str | None | bool = False  # False: not probed yet; None: mount namespaces work
_strict: StrictSupport | None = None


def support() -> cgroups.CgroupSupport:
    """The cgroups environments may get, as found by `prepare` (detected now if it never ran)."""
    global _support
    with _lock:
        if _support is None:
            _support = cgroups.detect()
        return _support


def prepare(*, limits: bool) -> cgroups.CgroupSupport:
    """Idempotent. With `limits`, the cgroups environments can get (detected once per process);
    without, none (RIE's semantics: the runtime runs as a plain process tree)."""
    reaper.become_subreaper()
    if not limits:
        return cgroups.CgroupSupport()
    global _warned
    found = support()
    with _lock:
        if not _warned:
            _warned = True
            for line in found.missing():
                log.warning("lambdalet: WARNING: %s", line)
        # At each start-up (a few directory listings): a crashed run may have ended meanwhile.
        for directory in cgroups.remove_stale(found):
            log.info("lambdalet: removed a stale cgroup of an earlier run: %s", directory)
        return found


def _warn_once(line: str) -> None:
    with _lock:
        if line in _said:
            return
        _said.add(line)
    log.warning("lambdalet: WARNING: %s", line)


def mount_namespace_problem() -> str | None:
    """Why `standard`'s private /tmp and read-only /var/task cannot be made here, or None.

    Probed once per process: a real `unshare --mount` and tmpfs mount; without
    privilege, in a user namespace (sandbox/userns.py), if this user may have them. As root, the
    empty mount points /var/task, /var/lang and /var/runtime are created on the host if missing
    (said once); nothing is ever mounted on the host itself."""
    global _mount_problem
    with _lock:
        if _mount_problem is not False:
            return _mount_problem
        _mount_problem = _probe_mount_namespace()
        return _mount_problem


def _probe_mount_namespace() -> str | None:
    found = tools()
    if found is None:
        return "util-linux's unshare and mount are not installed"
    unshare, mount = found
    start = [unshare, "--mount", "--propagation", "private"]
    if userns.needed():
        problem = userns.problem()
        if problem is not None:
            return problem
        start = userns.setup_argv()
    for point in MOUNT_POINTS:
        if os.path.isdir(point):
            continue
        # Without privilege, not even root of a user namespace may create it: /var is the host's
        # root's. (Mounting over /var instead would hide the host's.)
        try:
            os.makedirs(point, mode=0o755)
        except OSError as exc:
            return f"cannot create the mount point {point}: {exc.strerror or exc}; root can, once"
        log.info("lambdalet: created %s on the host, an empty mount point (function code, a runtime's "
                 "interpreter or its runtime client)", point)
    try:
        probe = subprocess.run([*start, mount, "-t", "tmpfs", "-o", "size=1m", "tmpfs", TASK_ROOT],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --mount failed: {exc}"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return f"unshare --mount failed: {reason}"
    return None


def strict_support() -> StrictSupport:
    """What `strict` adds that works here (a network namespace, the seccomp deny-list), probed
    once per process for real: a namespace made and dropped, the exec helper run."""
    global _strict
    with _lock:
        if _strict is None:
            machine = platform.machine()
            helper = None
            try:
                program = seccomp.deny_list(machine)
            except KeyError:
                denied: str | None = f"lambdalet has no system call table for {machine}"
            else:
                helper, denied = find_helper(machine, program)
            namespace = netns.problem()
            if helper is None and namespace is None:  # a helper that only joins the namespace
                helper, problem = find_helper(machine, b"")
                if helper is None:
                    namespace = f"lambdalet's exec helper cannot run here: {problem}"
            _strict = StrictSupport(namespace, denied, helper)
        return _strict


def isolation(requested: Isolation | None, *, function: str = "") -> tuple[Isolation, bool]:
    """The level a function's environments run at, and whether they get `standard`'s private
    /tmp and read-only /var/task (a mount namespace). Idempotent; says what is missing once.

    `requested` None is the default: `standard` where permitted (mount namespaces work), else
    `none`. An explicit `standard` the host cannot fully give runs with what it can (cgroups, or
    RLIMIT_DATA), each missing protection said. So does `strict` (`strict_support`); with neither
    of its own two protections it runs as `standard`."""
    reaper.become_subreaper()
    who = f"function {function}: " if function else ""
    level = requested
    if requested is Isolation.STRICT:
        found = strict_support()
        if found.netns_problem is not None:
            _warn_once(f"{who}isolation strict without a network namespace of its own ({found.netns_problem}): "
                       "the Runtime API is on the host's loopback, and the host's network is reachable")
        if found.seccomp_problem is not None:
            _warn_once(f"{who}isolation strict without the seccomp deny-list ({found.seccomp_problem}): "
                       "ptrace, mount, unshare, setns, bpf and the rest are as the host permits them")
        level = requested = Isolation.STRICT if found.any else Isolation.STANDARD
    if requested is Isolation.NONE:
        prepare(limits=False)
        return Isolation.NONE, False
    problem = mount_namespace_problem()
    if requested is None and problem is not None:
        _warn_once(f"isolation standard is not permitted here ({problem}): environments run at none, "
                   "sharing the host's /tmp, without memory or process limits")
        prepare(limits=False)
        return Isolation.NONE, False
    if problem is not None:
        _warn_once(f"no private /tmp nor read-only /var/task ({problem}): environments share the "
                   "host's /tmp and see their code at its own path")
    prepare(limits=True)
    return level or Isolation.STANDARD, problem is None


def cpu_model(requested: CpuModel, level: Isolation, *, function: str = "") -> CpuModel:
    """The CPU model a function's environments get at isolation `level`: `lambda` (a cpu cgroup
    with Lambda's share for their memory) only where they have cgroups and the cpu controller is
    writable; else `host`, said once."""
    if requested is CpuModel.HOST:
        return CpuModel.HOST
    if level is Isolation.NONE:
        who = f"function {function}: " if function else ""
        _warn_once(f"{who}cpu model lambda needs isolation standard (a cgroup): no CPU limit")
        return CpuModel.HOST
    found = support()
    if found.cpu is None:
        _warn_once(f"no CPU limit for cpu model lambda ({found.hierarchy('cpu')} cpu controller not writable): "
                   "environments use the host's CPUs")
        return CpuModel.HOST
    return CpuModel.LAMBDA
