"""Turn a session's raw record into plain, comparable data.

What is replaced, and why (both targets get exactly the same treatment):
* UUIDs become `<id1>`, `<id2>`, ... so "the same id" is still checked (an upper-cased copy
  becomes `<ID1>`). Request ids are numbered first, in the order of the START lines (the order
  the invokes arrived, even for invokes whose id the runtime never saw); other UUIDs (extension
  ids, tokens, ids the test made up) follow in order of first appearance.
* `Lambda-Runtime-Deadline-Ms` becomes `<deadline>` when deadline - arrival is within
  (0, timeout]; otherwise `<deadline off by N ms>`, which fails the comparison.
* The function directory, the two listener addresses, and durations in REPORT lines (with a check
  that Billed Duration = ceil(Duration), of the unrounded duration) become placeholders.
* A generated `Lambda-Runtime-Trace-Id` (`Root=1-<8 hex>-<24 hex>...`) becomes
  `<generated trace id>`; one the invoker chose is kept as it is.
* Framing is never compared (deviation "framing"): `Content-Length`, `Transfer-Encoding`,
  `Connection`, `Keep-Alive` and `Date` headers are dropped; bodies are compared de-framed.
* Bodies up to 2048 bytes of UTF-8 are kept as text; others as `{bytes, sha256}`.
* What an external extension said on its output (`<name> <what> <rest>`, extension_programs/),
  one note per extension: its events as sorted JSON, an INVOKE's `deadlineMs` as `<deadline>` when
  it is the function's timeout after a moment of the run, a SHUTDOWN's as `<stop + 2000 ms>` when
  it is 2,000 ms after a moment of the stop.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from .harness import Reply

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
GENERATED_TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}(;.*)?$")
FRAMING = {"content-length", "transfer-encoding", "connection", "keep-alive", "date"}
PLATFORM_LINE = re.compile(r"^(START|END|REPORT) RequestId: ")
REPORT_MS = re.compile(r"(Init Duration|Duration): (\d+\.\d\d) ms")
DEADLINE_FIELD = re.compile(r'"deadlineMs":(\d+)')
BILLED = re.compile(r"Billed Duration: (\d+) ms")


class Normaliser:
    def __init__(self, *, fndir: str, inv: tuple, rapi: tuple, timeout_s: int,
                 sent_trace_ids: tuple[str, ...] = (), run: tuple[float, float, float] = (0, 0, 0)):
        self.ids: dict[str, int] = {}
        self.run = run  # when the server started, when its stop began, when it had stopped (time.time())
        self.sent_trace_ids = sent_trace_ids
        self.literals = [(fndir, "<fndir>"), (f"{inv[0]}:{inv[1]}", "<inv>"),
                         (f"{rapi[0]}:{rapi[1]}", "<rapi>")]
        self.timeout_ms = timeout_s * 1000

    def text(self, s: str) -> str:
        for literal, placeholder in self.literals:
            s = s.replace(literal, placeholder)
        return UUID.sub(self._uuid, s)

    def _uuid(self, m: re.Match) -> str:
        key = m.group(0).lower()
        n = self.ids.setdefault(key, len(self.ids) + 1)
        return f"<ID{n}>" if m.group(0) == m.group(0).upper() and m.group(0) != key else f"<id{n}>"

    def value(self, v):
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {self.text(k): self.value(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self.value(x) for x in v]
        return v

    def body(self, b: bytes):
        if len(b) <= 2048:
            try:
                return self.text(b.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        return {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()[:16]}

    def headers(self, reply: Reply, pairs) -> dict[str, str]:
        out = {}
        for name, value in pairs:
            lname = name.lower()
            if lname in FRAMING:
                continue
            if lname == "lambda-runtime-deadline-ms":
                value = self.deadline(value, reply.received_at)
            elif (lname == "lambda-runtime-trace-id" and value not in self.sent_trace_ids
                  and GENERATED_TRACE.match(value)):
                value = "<generated trace id>"
            else:
                value = self.text(value)
            out[name] = value
        return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))

    def deadline(self, value: str, received_at: float) -> str:
        try:
            left = int(value) - received_at * 1000
        except ValueError:
            return f"<deadline not an integer: {value!r}>"
        if 0 < left <= self.timeout_ms:
            return "<deadline>"
        return f"<deadline off: {left:.0f} ms left of {self.timeout_ms}>"

    def exchange(self, entry: dict) -> dict:
        reply: Reply = entry["reply"]
        out = {"label": entry["label"], "call": self.text(entry["call"]), "outcome": reply.outcome}
        if reply.outcome in ("response", "truncated"):
            out["status"] = reply.status
            out["headers"] = self.headers(reply, reply.headers)
            out["body"] = self.body(reply.body)
            if isinstance(out["body"], str):  # the extensions' INVOKE event carries the deadline
                out["body"] = DEADLINE_FIELD.sub(
                    lambda m: f'"deadlineMs":"{self.deadline(m.group(1), reply.received_at)}"', out["body"])
            if reply.trailers:
                out["trailers"] = self.headers(reply, reply.trailers)
        return out

    def platform_line(self, line: str) -> str:
        line = self.text(line)
        if line.startswith("REPORT"):
            durations = dict(REPORT_MS.findall(line))
            billed = BILLED.search(line)
            if billed and "Duration" in durations:
                # ceil of the unrounded duration: 44.004 is printed 44.00 and billed 45
                shown = float(durations["Duration"])
                if int(billed.group(1)) not in (math.ceil(shown - 0.005), math.ceil(shown + 0.00499)):
                    line += f"  <billed {billed.group(1)} is not ceil({durations['Duration']})>"
            line = REPORT_MS.sub(lambda m: f"{m.group(1)}: <ms> ms", line)
            line = BILLED.sub("Billed Duration: <ms> ms", line)
        return line


    def extension_line(self, rest: str):
        what, _, text = rest.partition(" ")
        if what != "event":
            return f"{what} {self.text(text)}"
        event = json.loads(text)
        started, stopping, stopped = (1000 * t for t in self.run)
        if event.get("eventType") == "SHUTDOWN":
            window, placeholder = (stopping + 2000, stopped + 2000), "<stop + 2000 ms>"
        else:
            window, placeholder = (started + self.timeout_ms, stopped + self.timeout_ms), "<deadline>"
        deadline = event.get("deadlineMs")
        # one millisecond either way: the targets round their clocks to whole milliseconds
        if isinstance(deadline, int) and window[0] - 1 <= deadline <= window[1] + 1:
            event["deadlineMs"] = placeholder
        else:
            event["deadlineMs"] = f"<deadline off: {deadline!r}, not within {window}>"
        trace = event.get("tracing", {}).get("value")
        if trace and trace not in self.sent_trace_ids and GENERATED_TRACE.match(trace):
            event["tracing"]["value"] = "<generated trace id>"
        return f"event {json.dumps(self.value(event), sort_keys=True)}"


def transcript(record: list[dict], logs: str, exit_code, norm: Normaliser,
               extensions: tuple[str, ...] = ()) -> list[dict]:
    platform = [l for l in logs.splitlines() if PLATFORM_LINE.match(l)]
    for line in platform:
        if line.startswith("START"):
            norm.text(line)  # numbers the request ids in invoke order
    out = []
    for entry in record:
        if "note" in entry:
            out.append({"label": entry["label"], "note": norm.value(entry["note"])})
        else:
            out.append(norm.exchange(entry))
    out.append({"label": "platform log", "note": [norm.platform_line(l) for l in platform]})
    for name in extensions:
        said = [line[len(name) + 1:] for line in logs.splitlines() if line.startswith(f"{name} ")]
        out.append({"label": f"{name} said", "note": [norm.extension_line(rest) for rest in said]})
    out.append({"label": "server exit code", "note": exit_code})
    return out
