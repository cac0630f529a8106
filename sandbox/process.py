"""Launching a runtime as a process tree of its own, and making sure the whole tree goes away.

The runtime starts in a new session (so its own process group), with stdout and stderr on one
pipe the host reads. However its environment ends — the runtime exits, a timeout, the host
shutting down — the whole process group is killed and the runtime reaped (style anchor T6).
"""

from __future__ import annotations

import errno
import functools
import math
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

import trio


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


@dataclass(frozen=True, slots=True)
class Exit:
    status: int  # the exit code, or minus the signal number
    peak_rss_kb: int  # the runtime's own peak resident memory, from wait4's rusage


class RuntimeProcess:
    """A launched runtime: waited for through a pidfd (no blocking waitpid in the trio thread),
    reaped with wait4 so its peak memory is known even after it is gone."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.exit: Exit | None = None
        self._status_fd = _open_or_none(f"/proc/{self.pid}/status")

    async def wait(self) -> Exit:
        if self.exit is None:
            pidfd = os.pidfd_open(self.pid)
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
            if self.exit is None:  # another waiter may have reaped it meanwhile
                # While the runtime is a zombie its pid (and so its process group id) cannot be
                # reused: the moment to kill whatever it left behind in its group.
                kill_tree(self.pid)
                _, status, usage = os.wait4(self.pid, 0)
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                self.exit = Exit(self.popen.returncode, usage.ru_maxrss)
                self._close_status()
        return self.exit

    def peak_memory_mb(self) -> int | None:
        """The peak resident memory so far, in MB rounded up (VmHWM while alive, rusage after)."""
        if self.exit is not None:
            return math.ceil(self.exit.peak_rss_kb / 1024)
        if self._status_fd is None:
            return None
        try:
            status = os.pread(self._status_fd, 4096, 0)
        except OSError:
            return None
        start = status.find(b"VmHWM:")
        if start < 0:
            return None
        return math.ceil(int(status[start + 6:status.index(b"kB", start)]) / 1024)

    def _close_status(self) -> None:
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None


def _open_or_none(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


async def launch_runtime(spec: RuntimeSpec, output: OutputPipe) -> RuntimeProcess:
    """Start the runtime in a session of its own. Raises OSError if it cannot be started at all.

    Whoever launches it must `reap` it, whatever happens next.
    """
    popen = await trio.to_thread.run_sync(functools.partial(
        subprocess.Popen,
        list(spec.argv),
        env=spec.env,
        cwd=spec.cwd,
        stdin=subprocess.DEVNULL,
        stdout=output.write_fd,
        stderr=output.write_fd,
        start_new_session=True,
    ))
    output.close_write_end()
    return RuntimeProcess(popen)


async def reap(process: RuntimeProcess) -> Exit:
    """Kill the runtime's whole process group and wait for the runtime (its leftover children
    are killed by `wait` too, before the runtime itself is reaped)."""
    if process.exit is None:
        kill_tree(process.pid)
    with trio.CancelScope(shield=True):
        return await process.wait()
