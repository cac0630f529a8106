"""Where lambdalet-rie deliberately differs from the real RIE: the one place that says so.

Each entry is a named deviation with its reason. The comparison turns RIE's recorded transcript
into what lambdalet-rie must produce by applying, for lambdalet only:
* the deviation's `everywhere` rewrite (for deviations that touch every scenario), then
* the per-scenario changes listed in the scenario table under the deviation's name
  (`Scenario.deviations = {name: {label: changes}}`; `{}` means the deviation's `default` change).

Changes to one recorded entry: `status`, `outcome`, `body`, `note` (replace); `headers`,
`trailers` (merge; a value of None removes the header); `from` (copy the reply recorded under
another label); `absent` (lambdalet does not produce this entry); `init duration on` / `no init
duration on` (for the platform log: these request ids' REPORT lines carry an Init Duration, or not).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Callable

NEXT_CALL = "GET /2018-06-01/runtime/invocation/next"


@dataclass(frozen=True)
class Deviation:
    reason: str
    default: dict = field(default_factory=dict)
    everywhere: Callable[[list[dict]], list[dict]] | None = None
    # Masks applied to lambdalet's own transcript (values that differ by design, checked first).
    observed: Callable[[list[dict]], list[dict]] | None = None
    # Scenario-level replacement of the whole expected transcript, for deviations whose effect is
    # a different conversation altogether (see queue-concurrent-invokes).
    transcript: Callable[[list[dict]], list[dict]] | None = None


def _trace_id_on_every_next(transcript):
    for entry in transcript:
        if entry.get("call") == NEXT_CALL and entry.get("status") == 200:
            entry["headers"].setdefault("Lambda-Runtime-Trace-Id", "<generated trace id>")
            entry["headers"] = dict(sorted(entry["headers"].items(), key=lambda kv: kv[0].lower()))
    return transcript


def _extension_events(rewrite):
    """An `everywhere` rewrite of the events each external extension said (`<name> said` notes)."""
    def apply(transcript):
        for entry in transcript:
            if (entry.get("label") or "").endswith(" said") and isinstance(entry.get("note"), list):
                entry["note"] = [_rewrite_event(line, rewrite) for line in entry["note"]]
        return transcript
    return apply


def _rewrite_event(line: str, rewrite) -> str:
    if not line.startswith("event "):
        return line
    event = json.loads(line[len("event "):])
    rewrite(event)
    return "event " + json.dumps(event, sort_keys=True)


def _tracing_always(event: dict) -> None:
    if event["eventType"] == "INVOKE":
        event.setdefault("tracing", {"type": "X-Amzn-Trace-Id", "value": "<generated trace id>"})


def _spindown(event: dict) -> None:
    if event.get("shutdownReason") == "SandboxTerminated":
        event["shutdownReason"] = "spindown"


def _measured_report(transcript):
    """RIE's REPORT carries a meaningless Init Duration and Max Memory Used = Memory Size; both
    are masked on both sides by the normaliser (durations) and here (memory)."""
    for entry in transcript:
        if entry.get("label") == "platform log":
            entry["note"] = [_mask_memory(line) for line in entry["note"]]
    return transcript


def _mask_memory(line: str) -> str:
    return re.sub(r"Max Memory Used: \d+ MB", "Max Memory Used: <measured> MB", line)


def _measured_memory(transcript):
    """lambdalet's Max Memory Used must be a measurement: more than 0 and at most Memory Size."""
    for entry in transcript:
        if entry.get("label") == "platform log":
            entry["note"] = [_mask_measured(line) for line in entry["note"]]
    return transcript


def _mask_measured(line: str) -> str:
    m = re.search(r"Memory Size: (\d+) MB\tMax Memory Used: (\d+) MB", line)
    if m and 0 < int(m.group(2)) <= int(m.group(1)):
        return _mask_memory(line)
    return line


def _concurrent_queue(expected):
    """lambdalet: the second invoke waits, is served after the first, and the server stays up.
    Built from RIE's transcript: its `next` entry is the template for both events."""
    by = {e["label"]: e for e in expected}
    accepted = {"outcome": "response", "status": 202, "headers": {"Content-Type": "application/json"},
                "body": '{"status":"OK"}\n'}
    answer = {"outcome": "response", "status": 200,
              "headers": {"Content-Type": "text/plain; charset=utf-8"}}
    second_event = copy.deepcopy(by["next"])
    second_event.update(label="next after the first", body='{"n":2}')
    second_event["headers"]["Lambda-Runtime-Aws-Request-Id"] = "<id2>"
    invoke_call = by["first invoke"]["call"]
    log = [line for line in by["platform log"]["note"] if line.startswith("START RequestId: <id1>")]
    report = "\tDuration: <ms> ms\tBilled Duration: <ms> ms\tMemory Size: 3008 MB\tMax Memory Used: <measured> MB\t"
    log += ["END RequestId: <id1>", "REPORT RequestId: <id1>\tInit Duration: <ms> ms" + report,
            "START RequestId: <id2> Version: $LATEST", "END RequestId: <id2>",
            "REPORT RequestId: <id2>" + report]
    return [
        by["next"],
        {"label": "second invoke answered at once", "note": False},
        {"label": "response to the first", "call": by["response to the first"]["call"], **accepted},
        {"label": "first invoke", "call": invoke_call, **answer, "body": '"first"'},
        {"label": "next answered", "note": True},
        second_event,
        {"label": "response to the second",
         "call": "POST /2018-06-01/runtime/invocation/<id2>/response", **accepted},
        {"label": "second invoke, while the first is in flight", "call": invoke_call, **answer,
         "body": '"second"'},
        {"label": "server exit", "note": "serving"},
        {"label": "platform log", "note": log},
        {"label": "server exit code", "note": 0},
    ]


DEVIATIONS: dict[str, Deviation] = {
    "queue-concurrent-invokes": Deviation(
        "RIE panics (nil pointer after ReserveFailed: AlreadyReserved) and exits 2 when a second "
        "invoke arrives while one is in flight, dropping both callers and orphaning the runtime "
        "(issue #97). lambdalet-rie queues the second invoke behind the first.",
        transcript=_concurrent_queue),
    "function-error-header": Deviation(
        "RIE never sets X-Amz-Function-Error (issue #20). lambdalet-rie sets "
        "`X-Amz-Function-Error: Unhandled` on function errors, timeouts and runtime exits, as "
        "Lambda does and as boto3's FunctionError expects.",
        default={"headers": {"X-Amz-Function-Error": "Unhandled"}}),
    "trace-id-on-next": Deviation(
        "RIE never sends Lambda-Runtime-Trace-Id on /next (its tracer context is always empty), "
        "which breaks runtimes that require it (swift, zio-lambda, pure-lambda-ric). lambdalet-rie "
        "always sends it: the invoke's X-Amzn-Trace-Id, else a generated Root=1-<8 hex>-<24 hex>.",
        everywhere=_trace_id_on_every_next),
    "release-on-response": Deviation(
        "RIE answers the caller only when the runtime (and every INVOKE extension) polls next "
        "again. lambdalet-rie, like Lambda, answers as soon as /response or /error is accepted, "
        "so a runtime that posts and then exits still delivers its result (200, not 502)."),
    "init-exit-body": Deviation(
        "A runtime that exits during init without /init/error: RIE answers an empty 502 (issue "
        "#86). lambdalet-rie answers 502 with the Runtime.ExitError JSON it uses for exits "
        "mid-invoke."),
    "report-values": Deviation(
        "RIE's REPORT Init Duration measures only an internal hand-off (issue #106) and Max Memory "
        "Used is the configured size; Init Duration appears only on the first invoke of the RIE "
        "process. lambdalet-rie reports the real init time on the first invoke of every "
        "environment (so again after a re-init; not at all when init never finished) and the "
        "measured peak memory. Durations are "
        "masked for both targets; memory is masked here.",
        everywhere=_measured_report, observed=_measured_memory),
    "response-mode-no-wedge": Deviation(
        "An invalid Lambda-Runtime-Function-Response-Mode gets the same 400 from both, but RIE's "
        "state machine is left in InvocationResponse: /error and /next get 403 and the invoke "
        "hangs until the timeout. lambdalet-rie stays in the invocation, so the runtime can still "
        "post /error, which answers the caller.",
        transcript=lambda expected: _no_wedge(expected)),  # noqa: PLW0108 (defined below)
    "streaming-relay": Deviation(
        "RIE reads a streamed response to its end and sends it as one buffered body, dropping "
        "HTTP trailers. lambdalet-rie relays chunks to the caller as they arrive and passes the "
        "error trailers (Lambda-Runtime-Function-Error-Type/-Body) on as HTTP trailers."),
    "next-blocks-until-invoke": Deviation(
        "/next when RIE has no runtime (before the first invoke, or after a timeout reset before "
        "the next invoke) dereferences a nil pointer: the connection is dropped with no response. "
        "lambdalet-rie blocks it until an invocation arrives, as Lambda's /next does. Compared as: "
        "RIE answers at once (dropped); lambdalet has not answered within the grace period, and "
        "then carries the invoke's event."),
    "stream-size-limit": Deviation(
        "RIE applies the 6,291,556-byte Runtime API limit to streamed responses too (413 and "
        "Function.ResponseSizeTooLarge). lambdalet-rie relays a stream as it arrives and applies "
        "Lambda's limit for streamed responses (20 MiB), so a 7 MiB stream reaches the caller."),
    "error-size-limit": Deviation(
        "An /error body over 6,291,556 bytes makes RIE's handler panic: the connection drops and "
        "the invoke hangs until the timeout. lambdalet-rie answers it as it answers an oversized "
        "/response: 413 RequestEntityTooLarge to the runtime and Function.ResponseSizeTooLarge to "
        "the caller at once."),
    "no-cached-init-error": Deviation(
        "After an init failure reported through /init/error, RIE answers every later failed invoke "
        "with that init error for the life of the process, even an unrelated crash. lambdalet-rie "
        "reports each failure as it is: a later mid-invoke exit is a Runtime.ExitError."),
    "invalid-entrypoint-body": Deviation(
        "A bootstrap that cannot be executed: RIE answers an empty 502 (its issue #86). "
        "lambdalet-rie answers 502 with Lambda's Runtime.InvalidEntrypoint error, naming the "
        "path and the reason (`fork/exec <path>: no such file or directory`)."),
    "real-telemetry": Deviation(
        "the Logs and Telemetry APIs are real (RIE's are stubs answering 202 Telemetry.NotSupported, which "
        "observability extensions read as 'not supported'): a subscription must come from a registered "
        "extension, during init, within Lambda's bounds, and is then delivered (runtime_api/telemetry.py)"),
    "tracing-in-invoke-event": Deviation(
        "An external extension's INVOKE event from RIE has no `tracing` when the invoke carried no "
        "X-Amzn-Trace-Id (its tracer context is empty, as for trace-id-on-next). lambdalet-rie's always "
        "carries the trace id the runtime gets on /next: the invoke's, else a generated one.",
        everywhere=_extension_events(_tracing_always)),
    "shutdown-reason-spindown": Deviation(
        "RIE's SHUTDOWN event as it is stopped says shutdownReason `SandboxTerminated`, which is not one of "
        "the reasons the Extensions API documents (`spindown`, `timeout`, `failure`); lambdalet-rie says "
        "`spindown`, as Lambda does when it spins an environment down.",
        everywhere=_extension_events(_spindown)),
    "extension-failure-message": Deviation(
        "An external extension that ends mid-invocation (Extension.Crash) or posts exit/error "
        "(Extension.ExitError): RIE's errorMessage gives only the exit status (`RequestId: <id> Error: "
        "exit status 3`, and for exit/error the status it exits with afterwards). lambdalet-rie names the "
        "extension and what it did (`extension recorder crashed: exit status 3`, `extension recorder exited "
        "with error Extension.Failed`), failing the invocation as exit/error is posted; both answer 502 "
        "with the same errorType."),
    "extension-init-error-body": Deviation(
        "An external extension that posts init/error or exits before it registers: RIE answers an empty "
        "502 (as for init-exit-body). lambdalet-rie answers 502 with Lambda's Extension.InitError, naming "
        "the extension and why (`Extension recorder failed to initialize: it reported "
        "Extension.ConfigInvalid`)."),
    "framing": Deviation(
        "Framing is not behaviour: Go switches to chunked encoding above 2048 bytes where "
        "lambdalet may send Content-Length, and keep-alive handling may differ. Content-Length, "
        "Transfer-Encoding, Connection, Keep-Alive and Date are never compared and bodies are "
        "compared de-framed. Applied by normalise.py to both targets."),
}


def _no_wedge(expected):
    """lambdalet: after the 400 the invocation is still open, /error is accepted and answers the
    caller, and the runtime's next /next simply waits for the next invoke."""
    out = []
    for e in expected:
        label = e.get("label")
        if label == "error after it":
            e = {**e, "status": 202, "headers": {"Content-Type": "application/json"},
                 "body": '{"status":"OK"}\n'}
        elif label == "next after it answered at once":
            e = {**e, "note": False}
        elif label == "next after it":
            continue
        elif label == "invoke":
            e = {**e, "status": 200, "headers": {"Content-Type": "text/plain; charset=utf-8"},
                 "body": '{"errorMessage":"after bad mode","errorType":"E"}'}
        out.append(e)
    return out


def expected_for_lambdalet(rie_transcript: list[dict], scenario) -> list[dict]:
    expected = copy.deepcopy(rie_transcript)
    for name, deviation in DEVIATIONS.items():
        if deviation.everywhere:
            expected = deviation.everywhere(expected)
    for name, per_label in scenario.deviations.items():
        deviation = DEVIATIONS[name]  # a KeyError here is a typo in the table
        if deviation.transcript:
            expected = deviation.transcript(expected)
        for label, changes in per_label.items():
            expected = _change(expected, label, changes or deviation.default)
    return expected


def _with_init_duration(line: str, rid: str) -> str:
    head = f"REPORT RequestId: {rid}\t"
    if line.startswith(head) and "Init Duration" not in line:
        return head + "Init Duration: <ms> ms\t" + line[len(head):]
    return line


def _without_init_duration(line: str, rid: str) -> str:
    if line.startswith(f"REPORT RequestId: {rid}\t"):
        return line.replace("Init Duration: <ms> ms\t", "")
    return line


def observed_for_lambdalet(transcript: list[dict]) -> list[dict]:
    transcript = copy.deepcopy(transcript)
    for deviation in DEVIATIONS.values():
        if deviation.observed:
            transcript = deviation.observed(transcript)
    return transcript


def _change(transcript: list[dict], label: str, changes: dict) -> list[dict]:
    matches = [i for i, e in enumerate(transcript) if e.get("label") == label]
    assert matches, f"deviation names a label that was not recorded: {label!r}"
    out = []
    for i, entry in enumerate(transcript):
        if i not in matches:
            out.append(entry)
            continue
        if changes.get("absent"):
            continue
        entry = copy.deepcopy(entry)
        if "from" in changes:
            src = next(e for e in transcript if e.get("label") == changes["from"])
            entry.update({k: copy.deepcopy(v) for k, v in src.items() if k not in ("label", "call")})
        for key in ("status", "outcome", "body", "note"):
            if key in changes:
                entry[key] = changes[key]
        for rid in changes.get("init duration on", ()):
            entry["note"] = [_with_init_duration(line, rid) for line in entry["note"]]
        for rid in changes.get("no init duration on", ()):
            entry["note"] = [_without_init_duration(line, rid) for line in entry["note"]]
        for key in ("headers", "trailers"):
            if key in changes:
                merged = dict(entry.get(key) or {})
                for name, value in changes[key].items():
                    if value is None:
                        merged.pop(name, None)
                    else:
                        merged[name] = value
                entry[key] = dict(sorted(merged.items(), key=lambda kv: kv[0].lower()))
        out.append(entry)
    return out
