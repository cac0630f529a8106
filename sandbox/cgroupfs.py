"""The cgroup file system as files: reading and writing control files, parsing the kernel's cgroup
tables (/proc/self/cgroup, /proc/self/mountinfo, flat keyed files such as `memory.events`), and a
cgroup's members as pidfds. What both hierarchies share (cgroups(7)); sandbox.cgroupv1 and
sandbox.cgroupv2 say what each hierarchy's files mean, sandbox.cgroups puts them together.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Container
from dataclasses import dataclass, field


def read(path: str) -> str:
    # Plain system calls: an environment's start reads and writes several of these files, and a
    # buffered text file costs more than the kernel's side of a small control file.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
    finally:
        os.close(fd)
    return b"".join(parts).decode()


def write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_or_empty(path: str) -> str:
    """A kernel table (/proc/self/cgroup, mountinfo), or "" where it cannot be read."""
    try:
        return read(path)
    except OSError:
        return ""


def keyed(text: str) -> dict[str, int]:
    """A flat keyed file (`memory.events`, `cgroup.events`, v1's `memory.oom_control`): `key value`
    per line. Lines that are not a key and an integer are skipped."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            found[key] = int(value)
        except ValueError:
            continue
    return found


def read_key(path: str, key: str) -> int | None:
    """One key of a flat keyed file; None if the file or the key is missing."""
    try:
        return keyed(read(path)).get(key)
    except OSError:
        return None


def own_paths(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup: the path per v1 controller, and the v2 path under the key "" (the
    `0::/path` line). A v1 hierarchy without controllers (`name=systemd`) is kept under its name."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


@dataclass(frozen=True, slots=True)
class Mounts:
    """Where the hierarchies are mounted: each v1 controller's mount point and the root of the
    hierarchy it shows (not "/" when the host's cgroup was bind-mounted into a container), and
    the cgroup2 mount, if any."""

    v1: dict[str, tuple[str, str]] = field(default_factory=dict)  # controller -> (mount point, root)
    v2: tuple[str, str] | None = None  # (mount point, root)

    def directory(self, controller: str, own: str) -> str | None:
        """The directory of the cgroup `own` (a path from /proc/self/cgroup) of `controller` ("" for
        v2), or None where it is not mounted or not under what is mounted."""
        mount = self.v2 if controller == "" else self.v1.get(controller)
        if mount is None:
            return None
        point, root = mount
        if root != "/":
            if own != root and not own.startswith(root.rstrip("/") + "/"):
                return None
            own = own[len(root):] or "/"
        return os.path.join(point, own.lstrip("/")).rstrip("/") or "/"


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts(text: str) -> Mounts:
    """/proc/self/mountinfo (proc(5)): the cgroup and cgroup2 mounts; the first of each wins."""
    v1: dict[str, tuple[str, str]] = {}
    v2 = None
    for line in text.splitlines():
        fields = line.split()
        try:
            separator = fields.index("-")
        except ValueError:
            continue
        if len(fields) < separator + 3 or separator < 6:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        kind, options = fields[separator + 1], fields[separator + 3]
        if kind == "cgroup2" and v2 is None:
            v2 = (point, root)
        elif kind == "cgroup":
            for option in options.split(","):
                v1.setdefault(option, (point, root))
    return Mounts(v1, v2)


def controllers(directory: str) -> frozenset[str]:
    """v2: the controllers a cgroup may give its children (its `cgroup.controllers`)."""
    try:
        return frozenset(read(os.path.join(directory, "cgroup.controllers")).split())
    except OSError:
        return frozenset()


# -- members ---------------------------------------------------------------------------------------

def members(directory: str) -> list[int]:
    try:
        return [int(pid) for pid in read(os.path.join(directory, "cgroup.procs")).split()]
    except (OSError, ValueError):
        return []


def member_pidfds(directory: str, known: Container[int] = ()) -> dict[int, int]:
    """pid -> pidfd for the cgroup's members, but those in `known`. A pid listed may have been
    reused by the time its pidfd is opened: it counts only if, with the pidfd open (so the pid is
    pinned while it lives), the process is still a member."""
    fds = {}
    name = os.path.basename(directory)
    for pid in members(directory):
        if pid in known:
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                member = any(line.rstrip("\n").endswith("/" + name) for line in f)
            signal.pidfd_send_signal(fd, 0)  # the /proc entry read was this process's
        except OSError:
            member = False
        if member:
            fds[pid] = fd
        else:
            os.close(fd)
    return fds


def kill_members(directory: str) -> list[int]:
    """SIGKILL every member of the cgroup through pidfds (no pid can be reused under us);
    returns the pidfds, which the caller closes."""
    fds = list(member_pidfds(directory).values())
    for fd in fds:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
    return fds


def reap_pidfd(fd: int) -> bool:
    """Reap the process if it has exited and became our child (re-parented to us, the
    subreaper); else leave it to its parent. True once it is gone for good (reaped by us or by
    its parent). Only ever called on members of our cgroups, so it never steals another wait."""
    try:
        if os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None:
            return True
    except ChildProcessError:
        pass
    try:
        signal.pidfd_send_signal(fd, 0)
    except ProcessLookupError:
        return True  # reaped by its parent
    return False
