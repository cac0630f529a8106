"""A SnapStart copy's own mount namespace and private /tmp, made with plain system calls.

A cold-started runtime gets its mounts from the exec shim, with util-linux's `unshare` and `mount`
(sandbox/isolation.py). A copy is forked from its template and no exec follows, so it makes them
itself, through ctypes, as the template's mount plan says (bootstrap/mountplan.py, planned by
sandbox/restore.py).

A host without privilege (sandbox/userns.py) runs the template as its own user, without
capabilities: the copy then makes its mount namespace in a user namespace of its own, its user and
group mapped to themselves (as `unshare --map-current-user`), and gives up the capabilities it holds
there once its mounts are made: no exec follows to drop them, and with them it could undo its
mounts.

Imported only by a SnapStart template whose copies get a private /tmp. Standard library only.
"""

import ctypes
import os

from bootstrap.mountplan import BindReadOnly, MakeDirectory, MakeFile, Move, Tmpfs

# <sched.h>, <sys/mount.h>, <linux/capability.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 1, 32, 4096, 8192, 16384, 1 << 18
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
EPERM = 1


class PrivateTmp:
    """Made once, in the template, from the plan's steps; `enter()` in each copy."""

    def __init__(self, steps):
        self.steps = tuple(steps)
        libc = ctypes.CDLL(None, use_errno=True)
        # The functions copies call, looked up (and their call path run once, by a no-op unshare)
        # here, in pages the copies share, rather than in each copy.
        self._unshare, self._mount, self._capset = libc.unshare, libc.mount, libc.capset
        self._unshare(0)

    def enter(self):
        """A mount namespace of this process's own (in a user namespace of its own too, where it has
        no privilege), with the plan's mounts made in it."""
        in_own_user_namespace = self._unshare(CLONE_NEWNS) != 0
        if in_own_user_namespace:
            if ctypes.get_errno() != EPERM:
                _check(-1, "unshare(CLONE_NEWNS)")
            self._enter_user_namespace()
        self._call_mount(None, "/", None, MS_REC | MS_PRIVATE, None, "making / private")
        for step in self.steps:
            self._make(step)
        if in_own_user_namespace:
            header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)  # 0: this process
            _check(self._capset(header, (ctypes.c_uint32 * 6)()), "capset (dropping every capability)")

    def _enter_user_namespace(self):
        uid, gid = os.geteuid(), os.getegid()
        _check(self._unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        for name, line in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    def _make(self, step):
        kind = type(step)
        if kind is Tmpfs:
            self._call_mount("tmpfs", step.target, "tmpfs", 0, step.options, f"mount {step.target}")
        elif kind is MakeDirectory:
            os.makedirs(step.path, exist_ok=True)
        elif kind is MakeFile:
            os.close(os.open(step.path, os.O_CREAT | os.O_WRONLY, 0o644))
        elif kind is BindReadOnly:
            self._call_mount(step.source, step.target, None, MS_BIND, None, f"mount {step.target}")
            self._call_mount(None, step.target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None,
                             f"mount {step.target}")
        elif kind is Move:
            self._call_mount(step.source, step.target, None, MS_MOVE, None, f"mount {step.target}")
        else:
            raise TypeError(f"not a mount step: {step!r}")

    def _call_mount(self, source, target, fstype, flags, data, what):
        _check(self._mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)), what)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(text):
    return None if text is None else os.fsencode(text)
