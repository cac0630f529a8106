"""Platform log lines (START, END, REPORT, INIT_REPORT) in Lambda's and RIE's exact formats, the
server's log output, and the per-invocation tail that `X-Amz-Log-Type: Tail` returns.
"""

from __future__ import annotations

import enum
import math
import sys
from typing import BinaryIO

TAIL_BYTES = 4096


class LogStyle(enum.Enum):
    LAMBDA = "lambda"  # Lambda's REPORT: Init Duration after the memory fields, Status on failure
    RIE = "rie"  # RIE's REPORT: Init Duration first, no Status field


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


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}\n"


def report_line(
    style: LogStyle,
    request_id: str,
    *,
    duration_ms: float,
    memory_mb: int,
    max_memory_used_mb: int,
    init_duration_ms: float | None = None,
    restore_duration_ms: float | None = None,
    status: str | None = None,
    error_type: str | None = None,
) -> str:
    """Tab-separated, each field followed by a tab (the trailing tab is Lambda's and RIE's).
    A SnapStart environment's first invocation carries its restore, not an init."""
    fields = [f"REPORT RequestId: {request_id}"]
    init = f"Init Duration: {init_duration_ms:.2f} ms" if init_duration_ms is not None else None
    if style is LogStyle.RIE and init:
        fields.append(init)
    fields += [
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {math.ceil(duration_ms)} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_memory_used_mb} MB",
    ]
    if style is LogStyle.LAMBDA:
        if init:
            fields.append(init)
        if restore_duration_ms is not None:
            fields += [f"Restore Duration: {restore_duration_ms:.2f} ms",
                       f"Billed Restore Duration: {math.ceil(restore_duration_ms)} ms"]
        if status:
            fields.append(f"Status: {status}")
            if error_type:
                fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\t\n"


def init_report_line(*, duration_ms: float, phase: str, status: str, error_type: str | None) -> str:
    fields = [f"INIT_REPORT Init Duration: {duration_ms:.2f} ms", f"Phase: {phase}", f"Status: {status}"]
    if error_type:
        fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\n"


def restore_start_line(version: str) -> str:
    return f"RESTORE_START Runtime Version: {version}\n"


def restore_report_line(*, duration_ms: float, status: str | None = None, error_type: str | None = None) -> str:
    fields = [f"RESTORE_REPORT Restore Duration: {duration_ms:.2f} ms"]
    if status:
        fields.append(f"Status: {status}")
        if error_type:
            fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\n"
