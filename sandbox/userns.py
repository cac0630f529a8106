"""`standard` and `strict` for a host without privilege, through user namespaces where the kernel
allows them to this user.

A process with no CAP_SYS_ADMIN cannot make mount or network namespaces, but it can make a user
namespace and, as its root, every other kind inside it (user_namespaces(7)). So an
unprivileged host builds the same environments as root does, one user namespace further in:

* `standard`: the exec shim starts under `unshare --user --map-root-user --mount` instead of
  `unshare --mount`, so its mounts (sandbox/isolation.py's plan) are made by root of a user
  namespace of the environment's own, which owns the mount namespace;
* `strict`: the environment's network namespace is made by a short-lived child (`make`): it
  unshares a user and a network namespace together, maps the host's user to its root, brings `lo`
  up, listens on 127.0.0.1:9001 and sends the listener and both namespaces' descriptors back
  (SCM_RIGHTS), then exits. It must be a process of its own: CLONE_NEWUSER is refused to a
  multithreaded process, and the host is one (root's way, a worker thread unsharing only
  CLONE_NEWNET, sandbox/netns.py, is not open to it). The shim then enters both namespaces with
  util-linux's `nsenter` (the user namespace first: joining the network namespace takes
  CAP_SYS_ADMIN in the namespace that owns it, which the host's user gets there because its euid
  owns it) and makes the mount namespace inside them. A process start of its own makes this
  dearer than root's thread; what it adds to an environment's start is in
  benchmarks/results/sandbox-unprivileged.md.

In both, the runtime itself does not stay root of the namespace that owns its mounts: the shim's
last step before it (`drop_argv`) is `unshare --user --map-user=<uid> --map-group=<gid>`, a user
namespace nested in that one where the host's own uid and gid are mapped (the runtime sees the uid
it would see outside, non-root as Lambda's sbx_user1051, not 0). Capabilities held in a nested user
namespace give no power over a mount namespace its parent owns, and the mounts copied into any
namespace the runtime might make are locked together: so the runtime cannot unmount its private
/tmp (uncovering the host's) nor make /var/task writable again, which root of the owning namespace
could. (Mapping the user to itself in the first namespace instead would lose the capabilities the
mounts need at the shim's first exec.) It costs one exec more per start. A SnapStart copy,
forked from a template that runs so, makes its own user namespace for its mounts instead
(bootstrap/namespaces.py).

What is still missing without privilege (cgroups, unless delegated) is said by sandbox.host.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import socket
import subprocess
from collections.abc import Callable

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
_CAP_SYS_ADMIN = 21
_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4
# Sysctls that refuse user namespaces to an unprivileged user: upstream's limit (per user
# namespace: 0 refuses them below it), and Debian's and Ubuntu's switch.
_SYSCTLS = (("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
            ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone"))


@functools.cache
def needed() -> bool:
    """Whether this process needs a user namespace to make namespaces: it has no CAP_SYS_ADMIN."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return not int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1
    except (OSError, ValueError):
        pass
    return os.geteuid() != 0


@functools.cache
def _tools() -> tuple[str, str] | None:
    unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
    return (unshare, nsenter) if unshare and nsenter else None


def problem() -> str | None:
    """Why this user cannot have user namespaces here, or None: a real `unshare --user` (a process
    start), its refusal explained by the sysctl that refuses it where one does."""
    tools = _tools()
    if tools is None:
        return "util-linux's unshare and nsenter are not installed"
    for name, path in _SYSCTLS:
        try:
            with open(path) as f:
                if f.read().strip() == "0":
                    return f"user namespaces are not allowed to this user: {name} is 0"
        except OSError:
            continue  # a kernel without that switch
    try:
        probe = subprocess.run([tools[0], "--user", "--map-root-user", "true"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --user failed: {exc}"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        return f"unshare --user --map-root-user failed: {reason}"
    return None


def setup_argv() -> list[str]:
    """The shim's start for `standard`: root of a user namespace of its own, in a new mount
    namespace it owns, nothing propagated back."""
    return [_tools()[0], "--user", "--map-root-user", "--mount", "--propagation", "private"]


def join_argv(userns_fd: int, netns_fd: int) -> list[str]:
    """The shim's start for `strict`: enter the environment's user namespace (as its root, the
    host's user mapped to it) and network namespace, through this process's descriptors of them.
    Named by /proc/<pid>/fd rather than passed down, so that no descriptor of a namespace reaches
    the runtime."""
    host = os.getpid()
    return [_tools()[1], "--preserve-credentials", f"--user=/proc/{host}/fd/{userns_fd}",
            f"--net=/proc/{host}/fd/{netns_fd}", "--"]


def join_problem() -> str | None:
    """Why the shim could not enter namespaces through this process's descriptors, or None: a
    process that changed its own uid is not dumpable, and its /proc/<pid>/fd is closed to others."""
    if _libc().prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) != 1:
        return "this process is not dumpable (it changed its uid), so its namespaces cannot be entered"
    return None


def nsenter() -> str:
    """util-linux's `nsenter`, by absolute path."""
    return shutil.which("nsenter") or "nsenter"


def drop_argv() -> list[str]:
    """The exec just before the runtime's: into a user namespace nested in the one that owns its
    mounts, as the host's own uid and gid (see the module's docstring)."""
    return [_tools()[0], "--user", f"--map-user={os.getuid()}", f"--map-group={os.getgid()}", "--"]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def make(address: tuple[str, int],
         bring_up_loopback: Callable[[socket.socket], None]) -> tuple[int, int, socket.socket]:
    """Blocking (run it in a worker thread): a new user namespace (the host's user its root) and
    network namespace, with `lo` up and a socket listening on `address` in them, made by a
    short-lived child. Returns the user namespace's descriptor, the network namespace's and the
    listener. OSError with the child's reason if it could not.

    The host is threaded, so the child holds only the forking thread: between fork and _exit it
    makes system calls and touches no lock another thread could hold (no import, no logging)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
        if pid == 0:  # the child: system calls only, and out through os._exit whatever happens
            status = 1
            try:
                ours.close()
                _in_child(theirs, address, bring_up_loopback)
                status = 0
            except BaseException as exc:
                try:
                    theirs.send(str(exc).encode(errors="replace") or b"failed")
                except BaseException:
                    pass
            finally:
                os._exit(status)
        theirs.close()
        try:
            message, fds, _, _ = socket.recv_fds(ours, 4096, 3)
        finally:
            os.waitpid(pid, 0)  # it exits right after sending (or failing)
    finally:
        ours.close()
        theirs.close()
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise OSError(message.decode(errors="replace") or "the namespace's maker died")
    for fd in fds:  # received without close-on-exec (recv_fds ignores MSG_CMSG_CLOEXEC)
        os.set_inheritable(fd, False)
    listener, user, net = fds
    return user, net, socket.socket(fileno=listener)


def _in_child(channel: socket.socket, address: tuple[str, int],
              bring_up_loopback: Callable[[socket.socket], None]) -> None:
    uid, gid = os.geteuid(), os.getegid()
    # A host that changed its own uid (an embedding program dropping root) is not dumpable, which
    # makes its /proc/self files root's: this child's maps would be out of its own reach.
    _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    if _libc().unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(err)}")
    # As unshare --map-root-user: an unprivileged user may map only itself, and a gid only once
    # setgroups is denied. Its root is who enters it later (nsenter --preserve-credentials).
    for path, line in (("/proc/self/uid_map", f"0 {uid} 1"), ("/proc/self/setgroups", "deny"),
                       ("/proc/self/gid_map", f"0 {gid} 1")):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        bring_up_loopback(sock)
        sock.bind(address)
        sock.listen(128)
        user = os.open("/proc/self/ns/user", os.O_RDONLY)
        net = os.open("/proc/self/ns/net", os.O_RDONLY)
        socket.send_fds(channel, [b"\0"], [sock.fileno(), user, net])
