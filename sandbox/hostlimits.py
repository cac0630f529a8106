"""The host's own limits, which an environment can run into before the function's concurrency
does: open files, processes, memory. Lambda scales by adding capacity; one machine cannot, so when
a new environment would need more than the host gives, the invocation is refused as Lambda refuses
one over its concurrency (TooManyRequestsException, 429) and the log says which limit it was,
instead of the environment failing in some obscure way (or running without its cgroups).

At start-up the server raises its soft open-files limit to the hard one (as Go programs do since
Go 1.19, AWS's RIE among them): each environment costs the server a few descriptors (its Runtime
API listener and connection, its output pipe, its pidfd), and the usual soft limit of 1,024 would
allow fewer than two hundred. The runtimes get Lambda's own limit back (`RUNTIME_OPEN_FILES`).

A server with no descriptor left could not even accept the connection it would refuse, so a new
environment is refused while fewer than a reserve of descriptors are free (`check_open_files`).
"""

from __future__ import annotations

import errno
import os
import resource

# Lambda's quota: "File descriptors: 1,024" (AWS Lambda Developer Guide, "Lambda quotas").
RUNTIME_OPEN_FILES = 1024

# What creating a socket, pipe, process or cgroup fails with when a host limit is reached:
# descriptors (per process, system-wide), processes or threads (fork's EAGAIN), memory, and the
# number of cgroups (mkdir's ENOSPC).
_LIMIT_ERRNOS = {errno.EMFILE: "open files", errno.ENFILE: "open files (system-wide)",
                 errno.EAGAIN: "processes", errno.ENOMEM: "memory", errno.ENOSPC: "cgroups"}


class HostLimitReached(Exception):
    """A new environment cannot be made here: the host is out of `what` (a limit, not a fault)."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"the host's limit on {what} is reached ({detail})")
        self.what = what


def host_limit(exc: OSError) -> HostLimitReached | None:
    """The HostLimitReached that `exc` (from making a socket, pipe, process or cgroup) means, if any."""
    what = _LIMIT_ERRNOS.get(exc.errno)
    return HostLimitReached(what, exc.strerror or str(exc)) if what else None


def check_open_files() -> None:
    """HostLimitReached if a new environment would leave the server fewer free descriptors than it
    keeps for accepting connections (a quarter of its limit, at most 64). Cheap: the lowest free
    descriptor number (what `dup` returns) is where the dense run of open ones ends."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return
    reserve = min(64, limit // 4)
    try:
        lowest_free = os.dup(0)
    except OSError as exc:
        raise host_limit(exc) or exc from None
    os.close(lowest_free)
    if lowest_free >= limit - reserve:
        raise HostLimitReached("open files", f"{lowest_free} of {limit} in use; {reserve} are kept for connections")


def raise_open_files_limit() -> tuple[int, int]:
    """The soft limit on open files raised to the hard one; (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return soft, hard
        except (ValueError, OSError):
            pass
    return soft, soft
