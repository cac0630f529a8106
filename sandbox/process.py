"""Launching a runtime as a process tree of its own, and making sure the whole tree goes away.

The runtime starts in a new session (so its own process group), with stdout and stderr on one
pipe the host reads. However its environment ends — the runtime exits, a timeout, the host
shutting down — the whole process group is killed and the runtime reaped, so nothing it started
outlives it.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import resource
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from . import userns
from .cgroups import EnvironmentCgroup
from .hostlimits import RUNTIME_OPEN_FILES
from .isolation import TASK_ROOT, PrivateFilesystem, unshare_argv
from .runtime_user import RuntimeUser
from .strict import StrictExec, program_path


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    """What to run: the runtime's command line, its complete environment and working directory."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


class OutputPipe:
    """The runtime's merged stdout and stderr, read without blocking the host."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def drain(self) -> bytes:
        """Whatever is in the pipe right now (b"" if nothing); never waits."""
        parts = []
        while True:
            try:
                data = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    break
                raise
            if not data:
                break
            parts.append(data)
        return b"".join(parts)

    async def pump(self, sink: Callable[[bytes], None]) -> None:
        """Pass everything the runtime writes to `sink` until every writer has closed the pipe."""
        while True:
            await trio.lowlevel.wait_readable(self.read_fd)
            try:
                data = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                return
            sink(data)

    def close(self) -> None:
        self.close_write_end()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


def kill_tree(pid: int) -> None:
    """SIGKILL the runtime's whole process group (it leads its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class RuntimeProcess:
    """A launched runtime, waited for through a pidfd (no blocking waitpid in the trio thread).

    Its peak memory is sampled from /proc (VmHWM) whenever asked while it lives and remembered
    after it is gone. (wait4's ru_maxrss cannot serve: a child's high-water mark starts at its
    parent's resident size, inherited through fork or vfork before exec.)
    """

    def __init__(self, pid: int, cgroup: EnvironmentCgroup | None = None,
                 popen: subprocess.Popen | None = None, *, tree: bool = True) -> None:
        # `popen`, when there is one, is kept (and told the exit status): a Popen dropped while its
        # process lives would reap it behind our back.
        self.popen = popen
        self.pid = pid
        self.cgroup = cgroup
        # Whether the runtime's end is its environment's: its exit kills the whole cgroup. Not when
        # the environment has external extensions, which get their SHUTDOWN event first.
        self.tree = tree
        if cgroup is not None:
            cgroup.runtime_pid = self.pid
        self.status: int | None = None  # the exit code, or minus the signal number
        self._status_fd = _open_or_none(f"/proc/{self.pid}/status")
        self._peak_kb = 0

    async def wait(self) -> int:
        if self.status is None:
            pidfd = os.pidfd_open(self.pid)
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
            if self.status is None:  # another waiter may have reaped it meanwhile
                # While the runtime is a zombie its pid (and so its process group id) cannot be
                # reused: the moment to kill whatever it left behind in its group (and cgroup).
                self.kill_tree()
                try:
                    _, status = os.waitpid(self.pid, 0)
                    self.status = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    # An extension, reaped by its environment's cgroup sweep (cgroups.track) as it
                    # ended: how is not known, and it is gone all the same.
                    self.status = -signal.SIGKILL
                if self.popen is not None:
                    self.popen.returncode = self.status
                self._close_status()
        return self.status

    def exited(self) -> bool:
        """Whether the runtime has exited, even if its waiter has not run yet (it is not reaped
        here: `wait` does that)."""
        if self.status is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True  # reaped meanwhile

    def kill_tree(self) -> None:
        """SIGKILL the runtime's whole tree: its cgroup's members (noted for reaping), unless the
        environment outlives it (`tree`), and its process group."""
        if self.cgroup is not None and self.tree:
            self.cgroup.kill()
        kill_tree(self.pid)

    def terminate(self) -> None:
        """SIGTERM the process (its own; not the group), as Lambda signals a runtime at shutdown."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def peak_memory_mb(self) -> int | None:
        """The peak resident memory seen so far, in MB rounded up; None if never seen."""
        if self._status_fd is not None:
            try:
                status = os.pread(self._status_fd, 4096, 0)
                start = status.index(b"VmHWM:")
                self._peak_kb = max(self._peak_kb, int(status[start + 6:status.index(b"kB", start)]))
            except (OSError, ValueError):
                pass  # gone, or a zombie with no memory left to report
        return math.ceil(self._peak_kb / 1024) if self._peak_kb else None

    def _close_status(self) -> None:
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None


def _open_or_none(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _check_executable(spec: RuntimeSpec) -> None:
    """Raise the OSError exec would (the runtime is exec'd by a shim, whose own error would read
    differently): missing or not executable."""
    command = spec.argv[0]
    if "/" in command:
        path = os.path.join(spec.cwd or ".", command)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
    elif shutil.which(command, path=spec.env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


@dataclass(frozen=True, slots=True)
class Confined:
    """How the runtime is actually started: the shim's command line, the environment the runtime
    gets, and what the shim reads on its standard input (the mount table), if anything, and the
    descriptors it keeps (strict's network namespace)."""

    argv: list[str]
    env: dict[str, str]
    stdin: bytes | None = None
    pass_fds: tuple[int, ...] = ()


def confine(
    spec: RuntimeSpec,
    cgroup: EnvironmentCgroup | None,
    rlimit_data_mb: int | None,
    filesystem: PrivateFilesystem | None = None,
    strict: StrictExec | None = None,
    user: RuntimeUser | None = None,
) -> Confined:
    """The command line that puts the runtime in its cgroups (and under RLIMIT_DATA, the memory
    guard when there is no memory cgroup), and in `filesystem`'s mount namespace, before it
    execs: a /bin/sh shim (under util-linux's `unshare` for the namespace), because preexec_fn is
    unsafe in a threaded program. Without any of them, the runtime's own command line.

    `spec` is the runtime as the host sees it; inside `filesystem` it runs as `filesystem.present`
    shows it. `strict`'s helper, if any, is the shim's last exec (after the mounts: seccomp denies
    mount), and execs the runtime; `user`'s setpriv comes after it (the helper's setns needs root)
    and execs the runtime as that user.

    Without privilege the namespaces are made in user namespaces (sandbox/userns.py): the shim
    starts by entering strict's (`join`), or by making standard's, and the runtime runs in one
    nested in it (`drop`, just before `strict`'s helper)."""
    join = strict.join_argv() if strict is not None else []
    drop = userns.drop_argv() if join or (filesystem is not None and userns.needed()) else []
    if user is not None:
        strict = _UserExec(user, strict)
    if cgroup is None and rlimit_data_mb is None and filesystem is None:
        if strict is None:
            return Confined(list(spec.argv), spec.env)
        _check_executable(spec)
        return Confined([*join, *drop, *strict.argv(spec.argv, program_path(spec.argv[0], spec.env))], spec.env,
                        pass_fds=strict.pass_fds)
    _check_executable(spec)
    fds = strict.pass_fds if strict is not None else ()
    steps = cgroup.join_commands() if cgroup is not None else []
    if rlimit_data_mb is not None:
        steps.append(f"ulimit -S -d {rlimit_data_mb * 1024}")  # soft limit: no CAP_SYS_RESOURCE needed
    if filesystem is None:
        argv = strict.argv(spec.argv, program_path(spec.argv[0], spec.env)) if strict is not None else spec.argv
        return Confined([*join, "/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "lambdalet-shim", *drop,
                         *argv], spec.env, pass_fds=fds)
    plan = filesystem.plan(spec.argv, spec.env, spec.cwd, also=strict.interpreter if strict is not None else ())
    argv, env = filesystem.present(spec.argv, spec.env)
    if strict is not None:  # the runtime's executable as seen in there
        argv = strict.argv(argv, filesystem.present((program_path(spec.argv[0], spec.env),), {})[0][0])
    steps += plan.commands()
    start = [*join, *unshare_argv()] if join else userns.setup_argv() if drop else unshare_argv()
    return Confined([*start, "/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "lambdalet-shim", *drop, *argv],
                    env, plan.fstab, fds)


@dataclass(frozen=True, slots=True)
class _UserExec:
    """`user`'s setpriv as the last exec before the runtime, after `strict`'s helper if any: the
    same `argv(runtime_argv, program)` shape as StrictExec, so each branch of `confine` takes it."""

    user: RuntimeUser
    strict: StrictExec | None = None

    def argv(self, runtime_argv: tuple[str, ...] | list[str], program: str) -> list[str]:
        argv = self.user.argv(runtime_argv)
        return self.strict.argv(argv, argv[0]) if self.strict is not None else argv

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return self.strict.pass_fds if self.strict is not None else ()

    @property
    def interpreter(self) -> tuple[str, ...]:
        return (self.strict.interpreter if self.strict is not None else ()) + (self.user.argv(())[0],)


def confined_argv(spec: RuntimeSpec, cgroup: EnvironmentCgroup | None, rlimit_data_mb: int | None) -> list[str]:
    """`confine`'s command line, without a mount namespace."""
    return confine(spec, cgroup, rlimit_data_mb).argv


# What holds an environment's namespaces while its runtime and extensions join them (`confine_holder`).
HOLDER_ARGV = ("/bin/sh", "-c", "echo && exec sleep 2147483647")


def confine_holder(spec: RuntimeSpec, cgroup: EnvironmentCgroup | None, rlimit_data_mb: int | None,
                   filesystem: PrivateFilesystem, strict: StrictExec | None = None,
                   also: tuple[str, ...] = (), hosts: str | None = None) -> Confined:
    """An environment's holder, for one with external extensions: `confine`'s shim (the cgroups,
    the limits, the mount namespace built for the runtime `spec` and the programs `also`, strict's
    namespaces without privilege), whose last exec is a process that says it is ready (one empty
    line) and waits. The runtime and each extension then join its namespaces (`confine_joining`),
    so that they share one /tmp, one /opt and one network, as on Lambda. `hosts`: the file shown at
    /etc/hosts (sandbox.isolation.sandbox_hosts)."""
    join = strict.join_argv() if strict is not None else []
    steps = cgroup.join_commands() if cgroup is not None else []
    if rlimit_data_mb is not None:
        steps.append(f"ulimit -S -d {rlimit_data_mb * 1024}")
    plan = filesystem.plan(spec.argv, spec.env, spec.cwd,
                           also=(*also, *(strict.interpreter if strict is not None else ())), hosts=hosts)
    steps += plan.commands()
    start = [*join, *unshare_argv()] if join else userns.setup_argv() if userns.needed() else unshare_argv()
    return Confined([*start, "/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "lambdalet-shim",
                     *HOLDER_ARGV], {"PATH": "/usr/bin:/bin"}, plan.fstab)


def confine_joining(holder: int, spec: RuntimeSpec, cgroup: EnvironmentCgroup | None, rlimit_data_mb: int | None,
                    filesystem: PrivateFilesystem, strict: StrictExec | None = None,
                    user: RuntimeUser | None = None) -> Confined:
    """A process joining the environment that `holder` (its pid) holds: util-linux's `nsenter` into
    its mount namespace (and the user and network namespaces a host without privilege made), then
    `confine`'s last steps: the cgroups, the limits, the working directory, strict's helper and the
    runtime's user."""
    _check_executable(spec)
    enter = [userns.nsenter(), "--target", str(holder), "--mount"]
    drop: list[str] = []
    if userns.needed():
        enter[1:1] = ["--preserve-credentials"]
        enter += ["--user", *(["--net"] if strict is not None and strict.userns_fd is not None else [])]
        drop = userns.drop_argv()
    steps = cgroup.join_commands() if cgroup is not None else []
    if rlimit_data_mb is not None:
        steps.append(f"ulimit -S -d {rlimit_data_mb * 1024}")
    steps.append(f"cd {shlex.quote(TASK_ROOT if filesystem.task_root is not None else spec.cwd or '/')}")
    argv, env = filesystem.present(spec.argv, spec.env)
    if user is not None:
        strict = _UserExec(user, strict)
    if strict is not None:
        argv = strict.argv(argv, filesystem.present((program_path(spec.argv[0], spec.env),), {})[0][0])
    return Confined([*enter, "--", "/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "lambdalet-shim",
                     *drop, *argv], env, pass_fds=strict.pass_fds if strict is not None else ())


async def launch_runtime(
    spec: RuntimeSpec,
    output: OutputPipe,
    *,
    cgroup: EnvironmentCgroup | None = None,
    rlimit_data_mb: int | None = None,
    filesystem: PrivateFilesystem | None = None,
    strict: StrictExec | None = None,
    user: RuntimeUser | None = None,
) -> RuntimeProcess:
    """Start the runtime in a session of its own (and in `cgroup` and `filesystem`'s mount
    namespace, and under `strict`, before it execs; as `user`, if given). Raises OSError if it
    cannot be started at all.

    Whoever launches it must `reap` it, whatever happens next.
    """
    return await spawn(confine(spec, cgroup, rlimit_data_mb, filesystem, strict, user), spec.cwd, output, cgroup)


async def spawn(confined: Confined, cwd: str | None, output: OutputPipe, cgroup: EnvironmentCgroup | None = None,
                *, tree: bool = True) -> RuntimeProcess:
    """Start a `confine`d command line in a session of its own, its output on `output`. Raises
    OSError if it cannot be started at all; whoever spawns it must `reap` it."""
    stdin = subprocess.DEVNULL
    if confined.stdin is not None:
        stdin = os.memfd_create("lambdalet-fstab")
        os.write(stdin, confined.stdin)
        os.lseek(stdin, 0, os.SEEK_SET)
    try:
        popen = await trio.to_thread.run_sync(functools.partial(
            subprocess.Popen,
            confined.argv,
            env=confined.env,
            cwd=cwd,
            stdin=stdin,
            stdout=output.write_fd,
            stderr=output.write_fd,
            start_new_session=True,
            pass_fds=confined.pass_fds,
        ))
    finally:
        if confined.stdin is not None:
            os.close(stdin)
    output.close_write_end()
    # Lambda's limit, not the server's raised one (sandbox/hostlimits.py); never above the server's
    # own hard limit, which only CAP_SYS_RESOURCE could exceed.
    limit = min(RUNTIME_OPEN_FILES, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    try:
        resource.prlimit(popen.pid, resource.RLIMIT_NOFILE, (limit, limit))
    except (ProcessLookupError, PermissionError, ValueError):
        pass  # gone already
    return RuntimeProcess(popen.pid, cgroup, popen, tree=tree)


async def reap(process: RuntimeProcess) -> int:
    """Kill the runtime's whole process group and wait for the runtime (its leftover children
    are killed by `wait` too, before the runtime itself is reaped)."""
    if process.status is None:
        process.kill_tree()
    with trio.CancelScope(shield=True):
        return await process.wait()
