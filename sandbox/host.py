"""What the host process sets up once, at start-up of `lambdalet serve`, `lambdalet-rie` or an
embedding `Server`: it becomes the subreaper of everything it starts, and (when limits are
wanted) finds which cgroups it may use, removes the ones a crashed earlier run left behind and
says, once, which protection is missing (as Docker warns), never failing because of it.
"""

from __future__ import annotations

import logging
import threading

from . import cgroups, reaper

log = logging.getLogger("lambdalet")

_lock = threading.Lock()  # two embedding Servers may start in two threads
_support: cgroups.CgroupSupport | None = None
_warned = False


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
