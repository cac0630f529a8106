"""`strict`'s network namespace: one per environment, holding only `lo` and the environment's Runtime
API listener at 127.0.0.1:9001, as on Lambda.

Made without a process of its own (its cost is in benchmarks/results/strict.md): a short-lived
worker thread unshares CLONE_NEWNET (which moves only that thread), brings `lo` up, binds and
listens, keeps a descriptor
of the namespace and setns()es back. The host accepts on the listener from its own namespace, and
the runtime joins the namespace through the descriptor (sandbox/strict.py) before it execs. The
kernel frees the namespace once the listener, the descriptor and the environment's last process
are gone, so `close` is all the clean-up there is.

A host without CAP_SYS_ADMIN makes it inside a user namespace of the environment's own, through a
short-lived child instead (sandbox/userns.py); the shim then enters both.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import socket
import struct
import threading
from dataclasses import dataclass

import trio

from . import userns

CLONE_NEWNET = 0x40000000
RUNTIME_API = ("127.0.0.1", 9001)
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_BACKLOG = 128


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@dataclass(slots=True)
class NetworkNamespace:
    """An environment's namespace: `fd` (for the runtime to join), its Runtime API `listener`, and
    `inode`, what the namespace's processes see in /proc/self/ns/net; `user_fd`, the user namespace
    that owns it, when the host made it without privilege (-1: the host's own)."""

    fd: int
    listener: trio.SocketListener
    inode: int
    user_fd: int = -1

    def close(self) -> None:
        """Drop the host's hold on the namespaces (the listener is closed by its owner)."""
        for name in ("fd", "user_fd"):
            if getattr(self, name) >= 0:
                os.close(getattr(self, name))
                setattr(self, name, -1)


def make(address: tuple[str, int] = RUNTIME_API) -> tuple[int, socket.socket]:
    """In the calling thread, which must be one no other code shares (a worker thread): a new
    network namespace with `lo` up and a socket listening on `address` in it. Returns the
    namespace's descriptor and the socket; the thread is back in its own namespace afterwards."""
    libc = _libc()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd, sock = -1, None
    try:
        _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        try:
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            _bring_up_loopback(sock)
            sock.bind(address)
            sock.listen(_BACKLOG)
        finally:
            # Whatever happened, this thread goes home: it returns to trio's thread cache. (Into a
            # namespace we hold, with the privilege unshare just used, setns fails only short of
            # kernel memory; the error then names it, and that worker would stay in the namespace.)
            _check(libc.setns(home, CLONE_NEWNET), "setns back to the host's network namespace")
    except BaseException:
        if sock is not None:
            sock.close()
        if fd >= 0:
            os.close(fd)
        raise
    finally:
        os.close(home)
    return fd, sock


def _bring_up_loopback(sock: socket.socket) -> None:
    request = struct.pack("16sH22x", b"lo", 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
    fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


async def open_namespace(address: tuple[str, int] = RUNTIME_API) -> NetworkNamespace:
    """A new namespace with the environment's Runtime API listening at `address` inside it (in a
    user namespace of its own where the host has no privilege)."""
    user_fd = -1
    if userns.needed():
        user_fd, fd, sock = await trio.to_thread.run_sync(userns.make, address, _bring_up_loopback)
    else:
        fd, sock = await trio.to_thread.run_sync(make, address)
    try:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    except BaseException:
        sock.close()
        os.close(fd)
        if user_fd >= 0:
            os.close(user_fd)
        raise
    return NetworkNamespace(fd, listener, os.fstat(fd).st_ino, user_fd)


def socket_in(fd: int) -> socket.socket:
    """Blocking (run it in a worker thread): a TCP socket made inside the network namespace `fd`,
    for the host to connect to a listener there (the platform delivers telemetry to an extension
    listening on the environment's loopback). The thread goes home afterwards."""
    libc = _libc()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc.setns(fd, CLONE_NEWNET), "setns into the environment's network namespace")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _check(libc.setns(home, CLONE_NEWNET), "setns back to the host's network namespace")
    finally:
        os.close(home)


def problem() -> str | None:
    """Why environments cannot have a network namespace of their own here, or None. Probed with a
    real one, made and dropped in a thread of its own, as the caller may not be one; without
    privilege, in a user namespace (sandbox/userns.py), if this user may have them."""
    if userns.needed():
        found = userns.problem() or userns.join_problem()
        if found is not None:
            return found
        try:
            user, fd, sock = userns.make(("127.0.0.1", 0), _bring_up_loopback)
        except OSError as exc:
            return f"no network namespace in a user namespace: {exc.strerror or exc}"
        sock.close()
        os.close(fd)
        os.close(user)
        return None
    failures: list[OSError] = []

    def attempt() -> None:
        try:
            fd, sock = make(("127.0.0.1", 0))
        except OSError as exc:
            failures.append(exc)
        else:
            sock.close()
            os.close(fd)

    thread = threading.Thread(target=attempt, name="lambdalet-netns-probe")
    thread.start()
    thread.join()
    if not failures:
        return None
    if failures[0].errno == errno.EPERM:
        return "network namespaces need root (CAP_SYS_ADMIN) here"
    return failures[0].strerror or str(failures[0])
