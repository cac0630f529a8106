"""The platform's log lines (START, END, REPORT, INIT_REPORT, RESTORE_START, RESTORE_REPORT): which
lines an environment writes, when, and their exact text, in Lambda's or RIE's format.

`PlatformLog` is a pure formatter (no clock, no I/O): the environment tells it what happened and
when (times in seconds on the host's monotonic clock), and writes the text it returns. Formats as
the AWS Lambda Developer Guide ("Lambda function logs", "Improving startup performance with Lambda
SnapStart") shows them and as the real RIE prints them: tab-separated fields, each followed by a
tab, on one line.

Every phase also gives the Telemetry API's event (`telemetry`, drained by the environment into its
subscribers' streams, telemetry.py): `platform.initStart`, `platform.initRuntimeDone`,
`platform.initReport`, `platform.start`, `platform.runtimeDone` (with its `responseLatency` and
`responseDuration` spans), `platform.report`, the restore events, `platform.extension`, with the
record fields of the Telemetry API Event schema reference.

A function whose LoggingConfig says `LogFormat: JSON` gets them as Lambda writes them then (`JsonLog`):
one `{"time","type","record"}` object per line, `platform.start`, `platform.report`,
`platform.runtimeDone` for END, `platform.initReport`, `platform.restoreStart` and
`platform.restoreReport`, with the record fields of the Telemetry API reference, kept or dropped by the
function's SystemLogLevel as the guide's "Log-level filtering" maps each event to a level.
"""

from __future__ import annotations

import enum
import json
import math
import time
from dataclasses import dataclass

from .outcomes import OutcomeKind


class LogStyle(enum.Enum):
    LAMBDA = "lambda"  # Lambda's REPORT: Init Duration after the memory fields, Status on failure
    RIE = "rie"  # RIE's REPORT: Init Duration first, no Status field, no INIT_REPORT or RESTORE_* lines


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
    post_runtime_ms: float | None = None,
) -> str:
    """A SnapStart environment's first invocation carries its restore, not an init; one whose
    extensions worked on after the response, how long they did (PostRuntimeExtensionsDuration)."""
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
    if post_runtime_ms is not None:
        fields.append(f"PostRuntimeExtensionsDuration: {post_runtime_ms:.2f} ms")
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


def extension_line(name: str, events: tuple[str, ...] | list[str]) -> str:
    """What Lambda logs as an external extension registers."""
    return f"EXTENSION\tName: {name}\tState: Ready\tEvents: [{','.join(events)}]\n"


def restore_start_line(version: str) -> str:
    return f"RESTORE_START Runtime Version: {version}\n"


def restore_report_line(*, duration_ms: float, status: str | None = None, error_type: str | None = None) -> str:
    fields = [f"RESTORE_REPORT Restore Duration: {duration_ms:.2f} ms"]
    if status:
        fields.append(f"Status: {status}")
        if error_type:
            fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\n"


RUNTIME_VERSION = "lambdalet:0.1.0"  # what RESTORE_START names as the runtime version

# The system log level of each platform event (Lambda: "Log-level filtering", the event mapping of
# system log levels): at INFO, Lambda's default, start and report but not runtimeDone; WARN keeps none.
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
_EVENT_LEVEL = {
    "platform.initReport": "INFO",
    "platform.start": "INFO",
    "platform.runtimeDone": "DEBUG",
    "platform.report": "INFO",
    "platform.restoreStart": "INFO",
    "platform.restoreReport": "INFO",
    "platform.extension": "INFO",
}


@dataclass(frozen=True, slots=True)
class JsonLog:
    """A function's platform lines in Lambda's JSON log format."""

    function_arn: str
    level: str = "INFO"  # the SystemLogLevel: events below it are not written
    initialization_type: str = "on-demand"  # what its initReport records say (snap-start under SnapStart)
    wall_offset: float = 0.0  # epoch seconds minus the host clock's: turns a `now` into the record's time

    def shows(self, event: str) -> bool:
        return SYSTEM_LOG_LEVELS.index(_EVENT_LEVEL[event]) >= SYSTEM_LOG_LEVELS.index(self.level)

    def line(self, now: float, event: str, record: dict) -> str:
        if not self.shows(event):
            return ""
        wall = now + self.wall_offset
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"
        return json.dumps({"time": stamp, "type": event, "record": record}, separators=(",", ":")) + "\n"


def _metrics(duration_ms: float) -> dict:
    return {"durationMs": round(duration_ms, 3)}


def _status(record: dict, status: str | None, error_type: str | None) -> dict:
    record["status"] = status or "success"
    if error_type:
        record["errorType"] = error_type
    return record

_FAILED_TO_RUN = (OutcomeKind.EXIT_ERROR, OutcomeKind.INIT_ERROR, OutcomeKind.RESTORE_ERROR)


@dataclass(frozen=True, slots=True)
class Settled:
    """What an invocation's outcome adds to the log: lines before its END and REPORT, and the
    REPORT's status (None: it succeeded; no REPORT at all when `report` is False)."""

    lines: str = ""
    report: bool = True
    status: str | None = None
    error_type: str | None = None


class PlatformLog:
    """One environment's platform lines, and the durations they report."""

    def __init__(self, style: LogStyle, version: str, memory_mb: int, *, provisioned: bool = False,
                 json_log: JsonLog | None = None, function_name: str = "") -> None:
        self.style = style
        self.version = version
        self.memory_mb = memory_mb
        self.json = json_log if style is LogStyle.LAMBDA else None
        self.initialization_type = ("provisioned-concurrency" if provisioned else
                                    json_log.initialization_type if json_log is not None else "on-demand")
        self.launched_at = 0.0
        self.init_duration_ms: float | None = None
        self.restore_started_at: float | None = None
        self.restore_duration_ms: float | None = None
        self._init_reported = provisioned  # Lambda reports no init for provisioned environments
        self.function_name = function_name
        self.telemetry: list[tuple[str, dict]] = []  # Telemetry API events, until the environment takes them

    @property
    def lambda_style(self) -> bool:
        return self.style is LogStyle.LAMBDA

    @property
    def restoring(self) -> bool:
        return self.restore_started_at is not None and self.restore_duration_ms is None

    def launched(self, now: float) -> None:
        self.launched_at = now
        self.telemetry.append(("platform.initStart", {
            "initializationType": self.initialization_type, "phase": "init", "runtimeVersion": RUNTIME_VERSION,
            "functionName": self.function_name, "functionVersion": self.version}))

    def take_telemetry(self) -> list[tuple[str, dict]]:
        events, self.telemetry = self.telemetry, []
        return events

    def _init_telemetry(self, duration_ms: float, status: str, error_type: str | None) -> None:
        phase = {"initializationType": self.initialization_type, "phase": "init"}
        self.telemetry += [("platform.initRuntimeDone", _status(dict(phase), status, error_type)),
                           ("platform.initReport", _status({**phase, "metrics": _metrics(duration_ms)}, status,
                                                           error_type))]

    def _restore_telemetry(self, duration_ms: float, status: str | None, error_type: str | None) -> None:
        self.telemetry += [("platform.restoreRuntimeDone", _status({}, status, error_type)),
                           ("platform.restoreReport", _status({"metrics": _metrics(duration_ms)}, status, error_type))]

    # -- the phases --------------------------------------------------------------------------------

    def _init_report(self, now: float, duration_ms: float, status: str, error_type: str | None) -> str:
        if self.json is not None:
            return self.json.line(now, "platform.initReport", _status(
                {"initializationType": self.initialization_type, "phase": "init", "metrics": _metrics(duration_ms)},
                status, error_type))
        return init_report_line(duration_ms=duration_ms, phase="init", status=status, error_type=error_type)

    def _restore_report(self, now: float, duration_ms: float, status: str | None = None,
                        error_type: str | None = None) -> str:
        if self.json is not None:
            return self.json.line(now, "platform.restoreReport",
                                  _status({"metrics": _metrics(duration_ms)}, status, error_type))
        return restore_report_line(duration_ms=duration_ms, status=status, error_type=error_type)

    def init_done(self, now: float, *, snapshot: bool) -> str:
        """The runtime is past init; at SnapStart's snapshot point Lambda reports the init."""
        self.init_duration_ms = (now - self.launched_at) * 1000
        self._init_telemetry(self.init_duration_ms, "success", None)
        if snapshot and self.lambda_style:
            return self._init_report(now, self.init_duration_ms, "success", None)
        return ""

    def template_ready(self, now: float) -> str:
        """A SnapStart template's init is over (it parked)."""
        self.init_duration_ms = (now - self.launched_at) * 1000
        return self._init_report(now, self.init_duration_ms, "success", None)

    def template_failed(self, now: float, error_type: str) -> str:
        return self._init_report(now, (now - self.launched_at) * 1000, "error", error_type)

    def restore_started(self, now: float, *, copy: bool) -> str:
        """The restore begins (a copy's: its phases count from now)."""
        self.restore_started_at = now
        if copy:
            self.launched_at = now
        self.telemetry.append(("platform.restoreStart", {
            "runtimeVersion": RUNTIME_VERSION, "functionName": self.function_name, "functionVersion": self.version}))
        if not self.lambda_style:
            return ""
        if self.json is not None:
            return self.json.line(now, "platform.restoreStart", {
                "runtimeVersion": RUNTIME_VERSION, "functionName": self.json.function_arn.rsplit(":", 1)[-1],
                "functionVersion": self.version})
        return restore_start_line(RUNTIME_VERSION)

    def restore_done(self, now: float) -> str:
        assert self.restore_started_at is not None
        self.restore_duration_ms = (now - self.restore_started_at) * 1000
        self._restore_telemetry(self.restore_duration_ms, None, None)
        return self._restore_report(now, self.restore_duration_ms) if self.lambda_style else ""

    # -- one invocation ----------------------------------------------------------------------------

    def arrived(self, request_id: str) -> str:
        """RIE prints START when the invocation arrives (Lambda: when the runtime receives it)."""
        return start_line(request_id, self.version) if self.style is LogStyle.RIE else ""

    def delivered(self, request_id: str, *, now: float = 0.0, trace_id: str | None = None) -> tuple[str, bool]:
        """The START line of an invocation the runtime receives now, and whether the server's log
        shows it (Lambda's does; RIE's printed its own at arrival, and the tail has this one)."""
        record = {"requestId": request_id, "version": self.version}
        if trace_id:
            record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        self.telemetry.append(("platform.start", record))
        if self.json is not None:
            return self.json.line(now, "platform.start", {
                "requestId": request_id, "functionArn": self.json.function_arn, "version": self.version}), True
        return start_line(request_id, self.version), self.lambda_style

    def settled(self, kind: OutcomeKind, error_type: str | None, *, now: float, delivered: bool) -> Settled:
        """What an outcome adds to the log before its END and REPORT."""
        if kind is OutcomeKind.TIMEOUT:
            return Settled(status="timeout", error_type=error_type)
        if kind is OutcomeKind.RESTORE_TIMEOUT:
            lines = ""
            if self.lambda_style and self.restore_started_at is not None:
                lines = self._restore_report(now, (now - self.restore_started_at) * 1000, "timeout")
            return Settled(lines, status="timeout", error_type=error_type)
        if kind in _FAILED_TO_RUN:
            if self.restoring:
                self._restore_telemetry((now - self.restore_started_at) * 1000, "error", error_type)
            elif not delivered:
                self._init_telemetry((now - self.launched_at) * 1000, "error", error_type)
            if not self.lambda_style:
                return Settled(report=False)  # RIE prints nothing for a runtime that failed
            if self.restoring:
                lines = self._restore_report(now, (now - self.restore_started_at) * 1000, "error", error_type)
            elif not delivered:
                lines = self._init_report(now, (now - self.launched_at) * 1000, "error", error_type)
            else:
                lines = ""
            return Settled(lines, status="error", error_type=error_type)
        return Settled()

    def extension_registered(self, now: float, name: str, events: tuple[str, ...]) -> str:
        """An external extension registered (Lambda logs it; RIE logs its own line)."""
        self.telemetry.append(("platform.extension", {"name": name, "state": "Ready", "events": list(events)}))
        if not self.lambda_style:
            return ""
        if self.json is not None:
            return self.json.line(now, "platform.extension", {"name": name, "state": "Ready", "events": list(events)})
        return extension_line(name, events)

    def runtime_done(self, request_id: str, *, status: str, error_type: str | None, duration_ms: float,
                     produced_bytes: int | None, spans: list[dict], trace_id: str | None) -> None:
        """The runtime finished the invocation (platform.runtimeDone: its status, duration, the
        bytes it answered, and how long it took to start and to finish answering)."""
        record: dict = {"requestId": request_id, "status": status, "metrics": {"durationMs": round(duration_ms, 3)}}
        if produced_bytes is not None:
            record["metrics"]["producedBytes"] = produced_bytes
        if error_type and status != "success":
            record["errorType"] = error_type
        if spans:
            record["spans"] = spans
        if trace_id:
            record["tracing"] = {"type": "X-Amzn-Trace-Id", "value": trace_id}
        self.telemetry.append(("platform.runtimeDone", record))

    def report(self, request_id: str, *, duration_ms: float, max_memory_used_mb: int | None,
               status: str | None = None, error_type: str | None = None, now: float = 0.0,
               post_runtime_ms: float | None = None) -> str:
        """END and REPORT of one invocation. Only an environment's first carries its init (or,
        SnapStart, its restore)."""
        init_ms = restore_ms = None
        if not self._init_reported and self.init_duration_ms is not None:
            self._init_reported = True
            if self.restore_started_at is None:
                init_ms = self.init_duration_ms
            else:
                restore_ms = self.restore_duration_ms
        memory = self.memory_mb
        used = min(max_memory_used_mb, memory) if max_memory_used_mb is not None else memory
        metrics = {"durationMs": round(duration_ms, 3), "billedDurationMs": math.ceil(duration_ms),
                   "memorySizeMB": memory, "maxMemoryUsedMB": used}
        if init_ms is not None:
            metrics["initDurationMs"] = round(init_ms, 3)
        if restore_ms is not None:
            metrics["restoreDurationMs"] = round(restore_ms, 3)
            metrics["billedRestoreDurationMs"] = math.ceil(restore_ms)
        if post_runtime_ms is not None:
            metrics["postRuntimeExtensionsDurationMs"] = round(post_runtime_ms, 3)
        self.telemetry.append(("platform.report", _status({"requestId": request_id, "metrics": metrics}, status,
                                                          error_type)))
        if self.json is not None:
            done = _status({"requestId": request_id}, status, error_type)
            return (self.json.line(now, "platform.runtimeDone", done)
                    + self.json.line(now, "platform.report",
                                     _status({"requestId": request_id, "metrics": metrics}, status, error_type)))
        return end_line(request_id) + report_line(
            self.style, request_id, duration_ms=duration_ms, memory_mb=memory, max_memory_used_mb=used,
            init_duration_ms=init_ms, restore_duration_ms=restore_ms, status=status, error_type=error_type,
            post_runtime_ms=post_runtime_ms)
