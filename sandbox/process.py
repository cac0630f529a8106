"""Launching a runtime as a process tree of its own, and making sure the whole tree goes away.

The runtime starts in a new session (so its own process group), with stdout and stderr on one
pipe the host reads. However its environment ends — the runtime exits, a timeout, the host
shutting down — the whole process group is killed and the runtime reaped (style anchor T6).
"""

from __future__ import annotations

import errno
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


async def launch_runtime(spec: RuntimeSpec, output: OutputPipe) -> trio.Process:
    """Start the runtime in a session of its own. Raises OSError if it cannot be started at all.

    Whoever launches it must `reap` it, whatever happens next.
    """
    process = await trio.lowlevel.open_process(
        list(spec.argv),
        env=spec.env,
        cwd=spec.cwd,
        stdin=subprocess.DEVNULL,
        stdout=output.write_fd,
        stderr=output.write_fd,
        start_new_session=True,
    )
    output.close_write_end()
    return process


async def reap(process: trio.Process) -> int:
    """Kill the runtime's whole process group and wait for the runtime; return its status.

    Also after a normal exit: children it left behind share its process group.
    """
    kill_tree(process.pid)
    with trio.CancelScope(shield=True):
        return await process.wait()


def peak_memory_mb(pid: int) -> int | None:
    """The process's peak resident memory (VmHWM) in MB, rounded up, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return math.ceil(int(line.split()[1]) / 1024)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None
