"""The host as the reaper of everything its environments start.

`become_subreaper` (PR_SET_CHILD_SUBREAPER) makes every process orphaned below the host — a
runtime's double-forked daemon, the children of a killed runtime — re-parent to the host instead
of to PID 1 (which, on this machine kind, reaps only lazily). Those orphans are not our Popens:
the host reaps them itself, but only the ones it can prove came from one of its environments
(members of its cgroups: sandbox.cgroups; without cgroups, zombies in a runtime's session:
`end_session`), so it never steals the exit status of a child another part of the program waits
for (a runtime's RuntimeProcess, a subprocess of the embedding program).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import select
import signal

log = logging.getLogger("lambdalet")

_PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants; idempotent. False if refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return True
        reason = os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        reason = str(exc)
    log.warning("lambdalet: WARNING: cannot become the child subreaper (%s): orphaned processes of "
                "environments re-parent to PID 1", reason)
    return False


def _children() -> list[int]:
    """This process's children, from /proc/self/task/*/children (every thread's)."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(pid) for pid in f.read().split())
        except (OSError, ValueError):
            continue
    return pids


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...


def in_session(pid: int, session: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[3] == str(session)


def wait_exited(fds: list[int], timeout_ms: int = 1000) -> None:
    """Block (briefly: for processes just SIGKILLed) until every pidfd's process has exited."""
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


def end_session(session: int) -> int:
    """Kill and reap our children in `session` (a runtime's, which it led): what the runtime
    left behind that re-parented to us, and a SnapStart template's unused spare copy (forked for
    us to reap). Returns how many were reaped.

    A child of ours cannot be reaped by anyone else, so its pid is not reused under us."""
    fds = []
    for pid in _children():
        if in_session(pid, session):
            try:
                fds.append(os.pidfd_open(pid))
            except OSError:
                continue
    reaped = 0
    try:
        for fd in fds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
        wait_exited(fds)
        for fd in fds:
            try:
                if os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None:
                    reaped += 1
            except ChildProcessError:
                pass
    finally:
        for fd in fds:
            os.close(fd)
    return reaped
