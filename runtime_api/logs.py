"""Where log output goes: the server's log stream (`LogSink`), and the tail of one invocation's
log that `X-Amz-Log-Type: Tail` returns (`TailBuffer`). What the platform's own lines say is
platform_log.py's.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

TAIL_BYTES = 4096


class TailBuffer:
    """The last 4 KB of what one invocation logged, for X-Amz-Log-Result."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def append(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size > 4 * TAIL_BYTES:
            self._parts = [self.value()]
            self._size = len(self._parts[0])

    def value(self) -> bytes:
        return b"".join(self._parts)[-TAIL_BYTES:]


class LogSink:
    """Where the server writes platform lines and runtime output: its stdout, unchanged."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        stream = self._stream or sys.stdout.buffer
        try:
            stream.write(data)
            stream.flush()
        except (BrokenPipeError, ValueError):
            # A closed stdout must not take the server down; the lines are lost, nothing else is.
            pass
