"""Isolation levels, and what `standard`'s mount namespace shows the runtime.

Levels:

* `none`: a plain process tree in its own process group, as RIE runs its runtime;
* `standard`: Lambda's memory and pids limits through cgroups (sandbox/cgroups.py), and a private
  mount namespace: an empty `/tmp` of its own (a tmpfs of the function's ephemeral storage, gone
  with the environment) and the code directory read-only at `/var/task`, the runtime's working
  directory and LAMBDA_TASK_ROOT, so paths and stack traces read as on Lambda;
* `strict`: `standard` plus a network namespace of its own, where its Runtime API is at
  127.0.0.1:9001 and nothing else is reachable (sandbox/netns.py), and a seccomp deny-list with
  no_new_privs (sandbox/seccomp.py), loaded just before the runtime's exec (sandbox/strict.py).

The mount namespace is made by the exec shim (sandbox.process.confine), with util-linux's
`unshare --mount --propagation private` and one `mount -a` reading the environment's mount table
from the shim's standard input, so nothing is mounted on the host and the namespace ends with the
environment's last process. A managed runtime's interpreter, SDK and runtime client are bound at
/var/lang and /var/runtime (sandbox/managed.py), before the tmpfs covers /tmp: whatever of them
lies under the host's /tmp stays reachable there, and /tmp starts empty. Only a runtime command of
the user's own that lives in the host's /tmp (its program, its #! interpreter, a path in its
arguments: pytest's scripts live there) is bound back, read-only, at the same path in the new
/tmp: the tmpfs is first mounted on `/var/task` (over the code's bind), filled with those binds,
then moved to `/tmp`, uncovering the code again.

Every `mount` there runs with `--no-mtab`: the namespace is the environment's own, so nothing about
it belongs in the host's /run/mount/utab, and root of a user namespace (an unprivileged host,
sandbox/userns.py) may not write that file: libmount would make the mount, then fail (exit
status 32) writing it, as it does for a move or a bind with options (a runtime under /tmp).
"""

from __future__ import annotations

import enum
import functools
import os
import shlex
import shutil
from dataclasses import dataclass

from . import layers as opt

TASK_ROOT = "/var/task"
TMP = "/tmp"
# Where a managed runtime's interpreter and runtime client are (sandbox/managed.py), as on Lambda.
LANG_DIR = "/var/lang"
RUNTIME_DIR = "/var/runtime"
# The mount points of standard's namespace besides /tmp and /opt: empty directories on the host,
# made once by root.
MOUNT_POINTS = (TASK_ROOT, LANG_DIR, RUNTIME_DIR)
# Lambda's ephemeral storage (/tmp): 512 MB by default, configurable up to 10,240 MB.
DEFAULT_EPHEMERAL_MB = 512
EPHEMERAL_RANGE = (512, 10240)


@functools.cache
def tools() -> tuple[str, str] | None:
    """util-linux's `unshare` and `mount`, by absolute path (the runtime's PATH is not ours)."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    return (unshare, mount) if unshare and mount else None


class Isolation(enum.Enum):
    """How far an environment is kept apart from the host and from the others."""

    NONE = "none"
    STANDARD = "standard"
    STRICT = "strict"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class PrivateFilesystem:
    """`standard`'s mount namespace: a private /tmp of `ephemeral_mb`, `task_root` (a host
    directory, or None to leave the code where it is: lambdalet-rie) read-only at /var/task,
    `layers` (host directories, in Lambda's order) read-only at /opt, and `shown`: more host
    directories, each read-only where the runtime sees it (a managed runtime's /var/lang and
    /var/runtime, in the order they are bound)."""

    ephemeral_mb: int = DEFAULT_EPHEMERAL_MB
    task_root: str | None = None
    layers: tuple[str, ...] = ()
    shown: tuple[tuple[str, str], ...] = ()

    def present(self, argv: tuple[str, ...], env: dict[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
        """The command line and environment as the runtime sees them: the code directory's host
        path replaced by /var/task (LAMBDA_TASK_ROOT, LD_LIBRARY_PATH, a program in the code), a
        layer's by /opt (a runtime command found in a layer), and each `shown` directory's by where
        it is shown (the interpreter at /var/lang/bin, LAMBDA_RUNTIME_DIR)."""
        if self.task_root is None and not self.layers and not self.shown:
            return argv, env
        moved = ([(self.task_root, TASK_ROOT)] if self.task_root is not None else []) + list(self.shown)
        moved.sort(key=lambda pair: len(pair[0]), reverse=True)  # the most specific first

        def seen(value: str) -> str:
            for host, target in moved:
                shown = _moved(value, host, target)
                if shown is not None:
                    return shown
            return opt.opt_path(self.layers, value)

        return tuple(seen(arg) for arg in argv), {
            key: ":".join(seen(part) for part in value.split(":")) if key in _PATH_LISTS else seen(value)
            for key, value in env.items()
        }

    @property
    def elsewhere(self) -> tuple[str, ...]:
        """The host directories shown at fixed paths besides the code: the layers, `shown`'s."""
        return (*self.layers, *(host for host, _ in self.shown))

    def plan(self, argv: tuple[str, ...], env: dict[str, str], cwd: str | None,
             also: tuple[str, ...] = (), hosts: str | None = None) -> MountPlan:
        """How to build the runtime's view in a new mount namespace and enter its working
        directory. `argv`, `env` and `cwd` as the host sees them (before `present`); `also`: more
        programs run in there before the runtime (strict's exec helper's interpreter); `hosts`: a
        file shown at /etc/hosts (`sandbox_hosts`)."""
        table: list[tuple[str, str, str, str]] = []
        if hosts is not None:
            table.append((hosts, "/etc/hosts", "none", "bind,ro"))
        steps: list[str] = []
        tmpfs = ("tmpfs", "tmpfs", f"size={self.ephemeral_mb}m,mode=1777")
        if self.task_root is not None:
            table.append((self.task_root, TASK_ROOT, "none", "bind,ro"))
        layers = opt.opt_mount(self.layers)
        if layers is not None:
            table.append(layers)
        table += [(host, target, "none", "bind,ro,X-mount.mkdir") for host, target in self.shown]
        kept = kept_from_tmp(argv, env, cwd, self.task_root, also, self.elsewhere)
        if not kept:
            table.append((tmpfs[0], TMP, tmpfs[1], tmpfs[2]))
        else:
            # Built on /var/task (over the code's bind, if any), then moved over /tmp.
            table.append((tmpfs[0], TASK_ROOT, tmpfs[1], tmpfs[2]))
            mount = shlex.quote(tools()[1])
            for path, is_dir in kept:
                staged = TASK_ROOT + path[len(TMP):]
                if is_dir:
                    table.append((path, staged, "none", "bind,ro,X-mount.mkdir"))
                else:  # a file directly in /tmp: a file to mount it on
                    steps.append(f": > {shlex.quote(staged)} && {mount} --no-mtab --bind -o ro {shlex.quote(path)} "
                                 f"{shlex.quote(staged)}")
            steps.append(f"{mount} --no-mtab --move {TASK_ROOT} {TMP}")
        if self.task_root is not None:
            steps.append(f"cd {TASK_ROOT}")
        elif cwd is not None:
            steps.append(f"cd {shlex.quote(cwd)}")
        fstab = "".join(" ".join(_fstab_field(field) for field in row) + " 0 0\n" for row in table)
        return MountPlan(fstab.encode(), steps)


@dataclass(frozen=True, slots=True)
class MountPlan:
    """An environment's mounts: `fstab`, mounted in order by one `mount -a` (each `mount` run is
    a process start of its own), read from the shim's standard input; then the shell `steps` (what
    fstab cannot say: a move, a file's mount point, the working directory)."""

    fstab: bytes
    steps: list[str]

    def commands(self) -> list[str]:
        mount = shlex.quote(tools()[1])
        return [f"{mount} --no-mtab -a -T /proc/self/fd/0", "exec </dev/null", *self.steps]


def _fstab_field(value: str) -> str:
    return (value.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
            .replace("\n", "\\012"))


_PATH_LISTS = frozenset({"LD_LIBRARY_PATH", "PATH", "PYTHONPATH", "NODE_PATH"})


def _moved(value: str, host: str, target: str) -> str | None:
    """`value` (a path) with the directory `host` shown at `target`; None if it is not inside."""
    host = host.rstrip("/") or "/"
    if value == host:
        return target
    if value.startswith(host + "/"):
        return target + value[len(host):]
    return None


def _under_tmp(path: str) -> bool:
    return path.startswith(TMP + "/")


def kept_from_tmp(argv: tuple[str, ...], env: dict[str, str], cwd: str | None, task_root: str | None,
                  also: tuple[str, ...] = (), elsewhere: tuple[str, ...] = ()) -> list[tuple[str, bool]]:
    """What a runtime command of the user's own needs from the host's /tmp: (path, is a directory),
    outermost only.

    The directory of its program, of the program's #! interpreter, of `also` (programs run before
    it), of any absolute path in its arguments and, when the code is not shown at /var/task
    (lambdalet-rie), its working directory; a `bin` directory's parent instead (a virtualenv's or a
    toolchain's root). What lies in the code (`task_root`, at /var/task) or `elsewhere` (a layer at
    /opt, a managed runtime's /var/lang and /var/runtime) is reachable there already."""
    needed: list[str] = []
    inside = [directory.rstrip("/") + "/" for directory in (task_root, *elsewhere) if directory is not None]

    def need(path: str | None) -> None:
        if not path or not os.path.isabs(path):
            return
        for candidate in {path, os.path.realpath(path)}:
            if _under_tmp(candidate) and not any((candidate + "/").startswith(root) for root in inside):
                needed.append(candidate)

    program = argv[0] if argv else None
    if program and "/" not in program:
        program = shutil.which(program, path=env.get("PATH", os.defpath))
    elif program and not os.path.isabs(program) and cwd is not None:
        program = os.path.join(cwd, program)
    need(program)
    need(script_interpreter(program))
    for path in also:
        need(path)
    for arg in argv[1:]:
        if os.path.isabs(arg) and os.path.exists(arg):
            need(arg)
    if task_root is None and cwd is not None and _under_tmp(os.path.realpath(cwd)):
        needed.append(os.path.realpath(cwd) + "/.")  # the directory itself
    kept: list[tuple[str, bool]] = []
    for path in needed:
        if path.endswith("/."):
            directory = path[:-2]
        elif os.path.isdir(path):
            directory = path
        else:
            directory = os.path.dirname(path)
            if os.path.basename(directory) == "bin" and _under_tmp(os.path.dirname(directory)):
                directory = os.path.dirname(directory)
        if directory == TMP:
            kept.append((path, False))
        else:
            kept.append((directory, True))
    kept.sort(key=lambda item: len(item[0]))
    outermost: list[tuple[str, bool]] = []
    for path, is_dir in kept:
        if not any(path == p or (d and path.startswith(p + "/")) for p, d in outermost):
            outermost.append((path, is_dir))
    return outermost


SANDBOX_NAMES = ("sandbox.localdomain", "sandbox")


def sandbox_hosts(directory: str, etc_hosts: str = "/etc/hosts") -> str:
    """A hosts file for environments with external extensions: the host's, plus the names Lambda
    gives the execution environment itself (an extension listens on `sandbox` or
    `sandbox.localdomain` for its Telemetry API destination), on its loopback. Written once into
    `directory`; its path."""
    try:
        with open(etc_hosts) as f:
            text = f.read()
    except OSError:
        text = "127.0.0.1\tlocalhost\n"
    text = text.rstrip("\n") + "\n127.0.0.1\t" + " ".join(SANDBOX_NAMES) + "\n"
    path = os.path.join(directory, "hosts")
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    os.makedirs(directory, exist_ok=True)
    partial = f"{path}.{os.getpid()}"
    with open(partial, "w") as f:
        f.write(text)
    os.chmod(partial, 0o644)
    os.replace(partial, path)
    return path


def script_interpreter(program: str | None) -> str | None:
    """A script's #! interpreter (its first word), or None."""
    if not program:
        return None
    try:
        with open(program, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


def unshare_argv() -> list[str]:
    """The start of the shim's command line: a new mount namespace, nothing propagated back."""
    return [tools()[0], "--mount", "--propagation", "private"]
