"""The scenario table: one entry per behaviour of RIE that lambdalet-rie must reproduce (or
deliberately fix, see deviations.py).

Each scenario names the runtime that plays the function (`HOLD`: the test plays the runtime by
hand through `runtimes/hold.py`; `ric(...)`: the real awslambdaric; `BASH`: the AWS docs' bash +
curl bootstrap), its environment, and its steps: a function of a `Session` that makes the calls.
What the calls returned is recorded, normalised and compared with `data/<name>.json`, the
transcript captured from the real RIE (re-record with CONFORMANCE_RECORD=1, then review the diff).
`doc` says which fact of RIE's behaviour, as observed, the scenario pins down.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Callable

from .harness import INVOKE_PATH, RAPI, SAFETY_S, Background, Pending, Session, http

MAX = 6_291_556  # bytes; the Runtime API's payload limit both ways
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
ERROR_CAUSE = "application/vnd.aws.lambda.error.cause+json"
# How long we give an event that one target produces and the other, by design, does not (e.g. the
# caller's response before the runtime's next /next). It only bounds a wait: the recorded fact is
# "happened" or "did not happen", never a duration.
GRACE_S = 2.0

HOLD = ("{python}", "{dir}/hold.py", "app.handler")
BASH = ("{dir}/bootstrap", "function.handler")


def ric(handler: str) -> tuple[str, ...]:
    return ("{python}", "-m", "awslambdaric", handler)


FILES = {
    "hold": {"hold.py": "hold.py"},
    "ric": {"app.py": "app.py", "badimport.py": "badimport.py"},
    "bash": {"bootstrap": "bootstrap.sh", "function.sh": "function.sh"},
}


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    steps: Callable[[Session], None]
    args: tuple[str, ...] = HOLD
    files: str = "hold"
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: int = 3
    # deviation name (deviations.py) -> {label of a recorded entry: what lambdalet does instead}
    deviations: dict[str, dict[str, dict]] = field(default_factory=dict)
    expect_exit: bool = False  # the target exits by itself at startup
    # (file name, program of tests/runtime_api/extension_programs/): an external extension in the
    # run's own /opt/extensions; what it says is recorded as `<name> said`
    extension: tuple[str, str] | None = None


# --------------------------------------------------------------------------------------------
# The test as the runtime


class Hand:
    """The test playing the runtime. After posting a result the runtime polls /next again; that
    /next stays open until the following invoke, so it is kept here and becomes the next event."""

    def __init__(self, s: Session):
        self.s = s
        self.runtime: dict | None = None
        self.waiting = None

    def event(self, label: str | None = None):
        if self.waiting is not None:
            ev, self.waiting = self.waiting.result(label), None
            return ev
        if self.runtime is None:
            self.runtime = self.s.runtime_started()
        return self.s.next(label)

    def poll_next(self) -> None:
        self.waiting = self.s.next_bg()

    def restarted(self) -> None:
        """The previous runtime is gone (exit, kill, timeout); the next event needs a new one."""
        self.runtime, self.waiting = None, None


def cycle(s: Session, hand: Hand, payload: bytes, answer, *, label: str, headers=(),
          next_label: str | None = None):
    """One invoke: the caller sends `payload`, the test takes the event, calls `answer(event)`,
    polls /next again (which is what releases the caller under RIE), and records the result."""
    inv = s.invoke_bg(payload, headers=headers, label=label)
    ev = hand.event(next_label)
    answer(ev)
    hand.poll_next()
    return inv.result()


def ok(s: Session, body: bytes = b'"ok"', **kw):
    return lambda ev: s.respond(ev.request_id, body, **kw)


# --------------------------------------------------------------------------------------------
# Runtime API: routes


def in_flight(steps):
    """Run `steps` while an invoke is in flight (the runtime started and holds the event), so the
    routes are checked whether or not the target opens its Runtime API listener before the first
    invoke (rapi-listening-at-startup checks that separately)."""
    def run(s: Session):
        hand = Hand(s)
        inv = s.invoke_bg(label="invoke")
        ev = hand.event()
        steps(s)
        s.respond(ev.request_id, b'"ok"')
        hand.poll_next()
        inv.result()
    run.__name__ = steps.__name__
    return run


def listening_at_startup(s: Session):
    s.rapi("GET", f"{RAPI}/ping", label="ping before any invoke")
    s.rapi("GET", "/2018-06-01/nothing", label="unknown path before any invoke")


def rapi_not_found(s: Session):
    for path in [
        f"{RAPI}/runtime/invocation/nxt",
        "/2019-01-01/runtime/invocation/next",
        f"{RAPI}/Runtime/invocation/next",
        f"{RAPI}/runtime/invocation/next/",
        "/ping",
        "/",
        f"{RAPI}/runtime/restore/next",  # only with --enable-init-caching
        "/2021-04-23/credentials",
        INVOKE_PATH,
    ]:
        s.rapi("GET", path, label=f"GET {path}")


def rapi_wrong_method(s: Session):
    rid = "8f1c2a4e-0000-4000-8000-000000000000"
    for method, path in [
        ("PUT", f"{RAPI}/runtime/invocation/next"),
        ("HEAD", f"{RAPI}/runtime/invocation/next"),
        ("POST", f"{RAPI}/runtime/invocation/next"),
        ("GET", f"{RAPI}/runtime/invocation/{rid}/response"),
        ("GET", f"{RAPI}/runtime/invocation/{rid}/error"),
        ("GET", f"{RAPI}/runtime/init/error"),
        ("POST", f"{RAPI}/ping"),
        ("GET", "/2020-08-15/logs"),
        ("GET", "/2022-07-01/telemetry"),
        ("GET", "/2020-01-01/extension/register"),
        ("POST", "/2020-01-01/extension/event/next"),
        ("POST", "/2026-01-15/metadata/execution-environment"),
    ]:
        s.rapi(method, path, label=f"{method} {path}")


def ping(s: Session):
    s.rapi("GET", f"{RAPI}/ping", label="ping")


def logs_telemetry_stubs(s: Session):
    sub = json.dumps({"destination": {"protocol": "HTTP", "URI": "http://127.0.0.1:1"},
                      "types": ["platform"]}).encode()
    s.rapi("PUT", "/2020-08-15/logs", sub, label="logs")
    s.rapi("PUT", "/2022-07-01/telemetry", sub, label="telemetry")


def metadata(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(label="invoke")
    ev = hand.event()
    token = hand.runtime["env"]["AWS_LAMBDA_METADATA_TOKEN"]
    path = "/2026-01-15/metadata/execution-environment"
    s.rapi("GET", path, headers=[("Authorization", f"Bearer {token}")], label="bearer token")
    s.rapi("GET", path, headers=[("Authorization", token)], label="token without Bearer")
    s.rapi("GET", path, headers=[("Authorization", "Bearer 00000000-0000-4000-8000-000000000000")],
           label="wrong token")
    s.rapi("GET", path, label="no token")
    s.respond(ev.request_id, b'"ok"')
    hand.poll_next()
    inv.result()


# --------------------------------------------------------------------------------------------
# /next


def next_headers(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b'{"hello":"world"}', headers=[("Content-Type", "text/plain")], label="invoke")
    ev = hand.event("next")
    s.respond(ev.request_id, b'{"ok":true}', label="response")
    hand.poll_next()
    inv.result()


def next_repeated(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b'{"n":1}', label="invoke")
    ev = hand.event("first next")
    s.next("second next, same invoke")
    s.respond(ev.request_id, b'"once"', label="response")
    hand.poll_next()
    inv.result()


def next_invoke_headers(s: Session):
    cc = base64.b64encode(json.dumps({"custom": {"foo": "bar"}, "env": {"k": "v"}}).encode()).decode()
    hand = Hand(s)
    cycle(s, hand, b"{}", ok(s), label="invoke with client context, tenant and trace headers",
          headers=[("X-Amz-Client-Context", cc), ("X-Amz-Tenant-Id", "tenant-1"),
                   ("X-Amzn-Trace-Id", TRACE), ("X-Amz-Cognito-Identity", "{}")],
          next_label="next")


def client_context_invalid(s: Session):
    s.invoke(b'{"n":1}', headers=[("X-Amz-Client-Context", "not base64!")], label="bad client context")
    hand = Hand(s)
    inv = s.invoke_bg(b'{"n":2}', label="next invoke")
    ev = hand.event("next (only the second payload ever reaches the runtime)")
    s.respond(ev.request_id, b'"ok"')
    hand.poll_next()
    inv.result()


def payload_truncated(s: Session):
    hand = Hand(s)
    big = bytes(range(256)) * (MAX // 256) + b"x" * (MAX % 256) + b"TAIL"
    inv = s.invoke_bg(big, label="invoke with 6,291,560 bytes")
    ev = hand.event("next carries the first 6,291,556")
    s.respond(ev.request_id, b'"ok"')
    hand.poll_next()
    inv.result()


def payload_empty_and_binary(s: Session):
    hand = Hand(s)
    cycle(s, hand, b"", ok(s, b""), label="empty payload, empty response",
          next_label="next with empty payload")
    cycle(s, hand, b"\x00\xffnot json", ok(s, b"not json at all"),
          label="binary payload, non-JSON response", next_label="next with binary payload")


# --------------------------------------------------------------------------------------------
# /response


def response_content_types(s: Session):
    hand = Hand(s)
    for name, body in [("json", b'{"a":1}'), ("html", b"<html><body>hi</body></html>"),
                       ("nul bytes", b"\x00\x01\x02binary"), ("pdf", b"%PDF-1.4 ..."),
                       ("large text", b"y" * 3000)]:
        cycle(s, hand, b"{}", ok(s, body, headers=[("Content-Type", "application/x-custom")]),
              label=f"response {name}")


def response_released_by_next(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    ev = hand.event()
    s.respond(ev.request_id, b'"done"', label="response")
    s.note("caller answered before the runtime polls /next again", inv.answered_within(GRACE_S))
    hand.poll_next()
    inv.result()


def response_then_no_next(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    ev = hand.event()
    s.respond(ev.request_id, b'"done"', label="response")
    inv.result()


def response_then_exit(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    ev = hand.event()
    s.respond(ev.request_id, b'"posted before exit"', label="response")
    s.runtime_exit(hand.runtime, 0)
    inv.result()


def next_event_taken(s: Session, hand: Hand):
    """Start another invoke and take its event from the /next the runtime is waiting in: proof
    that the target has processed that /next (a target that answers the caller on /response
    gives no other sign). Returns a function that finishes this invoke."""
    inv = s.invoke_bg(b'{"n":2}', label="following invoke")
    ev = hand.event()

    def finish():
        s.respond(ev.request_id, b'"ok"')
        hand.poll_next()
        inv.result()
    return finish


def request_id_checks(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    ev = hand.event()
    rid = ev.request_id
    for what, bad in [("unknown", "3a2b9c7d-1111-4222-8333-444455556666"), ("upper-cased", rid.upper()),
                      ("empty", "")]:
        s.rapi("POST", f"{RAPI}/runtime/invocation/{bad}/response", b'"x"', label=f"response, {what} id")
        s.rapi("POST", f"{RAPI}/runtime/invocation/{bad}/error", b'"x"', label=f"error, {what} id")
    s.respond(rid, b'"ok"', label="response, right id")
    hand.poll_next()
    inv.result()
    finish = next_event_taken(s, hand)
    s.respond(rid, b'"again"', label="response for a finished invoke")
    s.error(rid, b'"again"', label="error for a finished invoke")
    finish()


def double_response(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    rid = hand.event().request_id
    s.respond(rid, b'"one"', label="response")
    s.respond(rid, b'"two"', label="second response")
    s.error(rid, b'"three"', label="error after response")
    hand.poll_next()
    inv.result()
    finish = next_event_taken(s, hand)
    s.respond(rid, b'"four"', label="response after next")
    finish()


def double_error(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    rid = hand.event().request_id
    s.error(rid, b'{"errorMessage":"m","errorType":"E"}', label="error")
    s.error(rid, b'"again"', label="second error")
    s.respond(rid, b'"late"', label="response after error")
    hand.poll_next()
    inv.result()
    finish = next_event_taken(s, hand)
    s.error(rid, b'"after next"', label="error after next")
    finish()


def response_mode_streaming_accepted(s: Session):
    hand = Hand(s)
    cycle(s, hand, b"{}", ok(s, b"buffered body, streaming header",
                             headers=[("Lambda-Runtime-Function-Response-Mode", "streaming")],
                             label="response with mode streaming"),
          label="invoke")


def response_mode_invalid(mode: str):
    def steps(s: Session):
        hand = Hand(s)
        inv = s.invoke_bg(b"{}", label="invoke")
        rid = hand.event().request_id
        s.respond(rid, b'"x"', headers=[("Lambda-Runtime-Function-Response-Mode", mode)],
                  label=f"response with mode {mode}")
        s.error(rid, b'{"errorMessage":"after bad mode","errorType":"E"}', label="error after it")
        nxt = s.next_bg()
        s.note("next after it answered at once", nxt.answered_within(GRACE_S))
        if nxt.pending.done():
            nxt.result("next after it")
        inv.result()
    return steps


def response_size_limit(s: Session):
    hand = Hand(s)
    cycle(s, hand, b"{}", ok(s, b"a" * MAX, label="response of 6,291,556 bytes"),
          label="invoke answered with 6,291,556 bytes")
    cycle(s, hand, b"{}", ok(s, b"a" * (MAX + 1), label="response of 6,291,557 bytes"),
          label="invoke answered with 6,291,557 bytes")


def response_chunked(s: Session):
    hand = Hand(s)
    cycle(s, hand, b"{}",
          lambda ev: s.respond(ev.request_id, b"", chunks=[b"part1-", b"part2-", b"part3"],
                               label="chunked response"),
          label="invoke")


def streaming_relay(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    rid = hand.event().request_id
    seen = {}

    def after_chunk(i):
        if i == 0:
            seen["first chunk reached the caller while the stream was open"] = \
                inv.first_data.wait(GRACE_S)

    s.respond(rid, b"", headers=[("Lambda-Runtime-Function-Response-Mode", "streaming"),
                                 ("Content-Type", "text/plain")],
              chunks=[b"part1-", b"part2-", b"part3"], between_chunks=after_chunk,
              label="streamed response")
    s.note("relay", seen)
    hand.poll_next()
    inv.result()


def streaming_error_trailers(s: Session):
    hand = Hand(s)
    err = base64.b64encode(b'{"errorMessage":"mid-stream","errorType":"StreamErr"}').decode()
    cycle(s, hand, b"{}", lambda ev: s.respond(
        ev.request_id, b"",
        headers=[("Lambda-Runtime-Function-Response-Mode", "streaming"),
                 ("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")],
        chunks=[b"part1-", b"part2-", b"part3"],
        trailers=[("Lambda-Runtime-Function-Error-Type", "Function.StreamErr"),
                  ("Lambda-Runtime-Function-Error-Body", err)],
        label="streamed response ending with error trailers"), label="invoke")


def streaming_too_large(s: Session):
    hand = Hand(s)
    chunk = b"s" * (1 << 20)
    cycle(s, hand, b"{}", lambda ev: s.respond(
        ev.request_id, b"", headers=[("Lambda-Runtime-Function-Response-Mode", "streaming")],
        chunks=[chunk] * 7, label="7 MiB streamed response"), label="invoke")


# --------------------------------------------------------------------------------------------
# /error


def error_bodies(s: Session):
    hand = Hand(s)
    cause = {"errorMessage": "m", "errorType": "T", "stackTrace": ["a"], "errorCause": {"x": 1},
             "extra": 1}
    cases = [
        ("error.cause+json is re-serialised", json.dumps(cause).encode(),
         [("Content-Type", ERROR_CAUSE)]),
        ("error.cause+json without stackTrace", b'{"errorMessage":"m","errorType":"T"}',
         [("Content-Type", ERROR_CAUSE)]),
        ("error.cause+json that is not JSON", b"{not json", [("Content-Type", ERROR_CAUSE)]),
        ("application/json is verbatim", b'{"errorMessage": "m", "errorType": "T", "extra": 1}',
         [("Content-Type", "application/json")]),
        ("text is verbatim", b"not json", [("Content-Type", "text/plain")]),
        ("empty body", b"", []),
        ("error type header is not visible", b'{"errorMessage":"m","errorType":"T"}',
         [("Lambda-Runtime-Function-Error-Type", "Function.Custom"),
          ("Lambda-Runtime-Function-XRay-Error-Cause", '{"exceptions":[]}')]),
    ]
    for name, body, headers in cases:
        cycle(s, hand, b"{}", lambda ev: s.error(ev.request_id, body, headers=headers,
                                                 label=f"post: {name}"), label=name)


def error_too_large(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    rid = hand.event().request_id
    s.error(rid, b"e" * (MAX + 1), label="error of 6,291,557 bytes")
    inv.result()


# --------------------------------------------------------------------------------------------
# init


INIT_ERROR = (b'{"errorMessage": "Unable to import module \'x\'", "errorType": '
              b'"Runtime.ImportModuleError", "requestId": "", "stackTrace": []}')


def init_error_then_exit(s: Session):
    inv = s.invoke_bg(b"{}", label="invoke")
    rt = s.runtime_started()
    s.init_error(INIT_ERROR, headers=[("Lambda-Runtime-Function-Error-Type", "Runtime.ImportModuleError")],
                 label="init error during init")
    s.next("next after init error")
    s.runtime_exit(rt, 1)
    inv.result()
    # RIE keeps the init error for the life of the process: a later, unrelated failure returns it
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="second invoke, runtime exits mid-invoke")
    hand.event("next of the second invoke")
    s.runtime_exit(hand.runtime, 7)
    inv.result()


def init_error_stay_alive(s: Session):
    inv = s.invoke_bg(b"{}", label="invoke")
    s.runtime_started()
    s.init_error(b'{"errorMessage":"m","errorType":"Runtime.Custom"}', label="init error")
    inv.result()


def init_error_after_init(s: Session):
    hand = Hand(s)
    cycle(s, hand, b"{}", lambda ev: (
        s.init_error(b'{"errorMessage":"late","errorType":"Runtime.X"}', label="init error after init"),
        s.respond(ev.request_id, b'"ok"')), label="invoke")
    s.rapi("GET", f"{RAPI}/runtime/init/error", label="GET init error")


def init_exit_without_init_error(code: int):
    def steps(s: Session):
        inv = s.invoke_bg(b"{}", label="invoke")
        rt = s.runtime_started()
        s.runtime_exit(rt, code)
        inv.result()
        hand = Hand(s)
        cycle(s, hand, b"{}", ok(s), label="next invoke starts a new runtime")
    return steps


def bootstrap_missing(s: Session):
    s.invoke(b"{}", label="first invoke")
    s.invoke(b"{}", label="second invoke")


# --------------------------------------------------------------------------------------------
# runtime exits, timeouts, concurrency


def exit_mid_invoke(s: Session):
    hand = Hand(s)
    for label, end in [("exit 7", lambda rt: s.runtime_exit(rt, 7)),
                       ("exit 0", lambda rt: s.runtime_exit(rt, 0)),
                       ("SIGKILL", s.runtime_kill)]:
        inv = s.invoke_bg(b"{}", label=f"runtime ends mid-invoke: {label}")
        hand.event()
        end(hand.runtime)
        inv.result()
        hand.restarted()
    cycle(s, hand, b"{}", ok(s), label="then an invoke succeeds")


def timeout(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke that times out")
    rid = hand.event().request_id
    inv.result()
    s.respond(rid, b'"late"', label="late response")
    s.error(rid, b'"late"', label="late error")
    late = s.next_bg()
    s.note("late next answered at once", late.answered_within(GRACE_S))
    if late.pending.done():
        late.result("late next")
    hand.restarted()
    cycle(s, hand, b"{}", ok(s), label="next invoke re-inits")


def concurrent_invokes(s: Session):
    hand = Hand(s)
    first = s.invoke_bg(b'{"n":1}', label="first invoke")
    rid = hand.event("next").request_id
    second = s.invoke_bg(b'{"n":2}', label="second invoke, while the first is in flight")
    s.note("second invoke answered at once", second.answered_within(GRACE_S))
    if second.pending.done() and second.result().outcome == "dropped":
        # RIE crashes: its callers' connections close as it goes down, and its listeners may
        # outlive them for a moment. What follows is about the crashed server, so it waits for
        # the server's exit (the event), however fast or slow the crash is.
        s.server.wait_exit()
    s.respond(rid, b'"first"', label="response to the first")
    nxt = s.next_bg()
    first.result()
    s.note("next answered", nxt.answered_within(GRACE_S))
    if nxt.pending.done():
        ev = nxt.result("next after the first")
        if ev.status == 200:
            s.respond(ev.request_id, b'"second"', label="response to the second")
            hand.poll_next()
            second.result()
    s.server_exit()


def next_before_first_invoke(s: Session):
    early = s.next_bg()
    s.note("next before any invoke answered at once", early.answered_within(GRACE_S))
    if early.pending.done():
        early.result("next before any invoke")
    hand = Hand(s)
    inv = s.invoke_bg(b'{"n":1}', label="invoke")
    if not early.pending.done():
        ev = early.result("next before any invoke")  # lambdalet: it carries this invoke's event
    else:
        ev = hand.event("next after the invoke")
    s.respond(ev.request_id, b'"ok"')
    hand.poll_next()
    inv.result()


# --------------------------------------------------------------------------------------------
# invoke side


def invoke_methods(s: Session):
    for method in ["POST", "GET", "PUT", "HEAD", "DELETE"]:
        s.invoke(b'{"m":"%s"}' % method.encode(), method=method, label=f"{method}")
    s.invoke(b'{"q":1}', path=INVOKE_PATH + "?Qualifier=1", label="?Qualifier=1")
    for t in ["Event", "DryRun"]:
        s.invoke(b'{"t":"%s"}' % t.encode(), headers=[("X-Amz-Invocation-Type", t)],
                 label=f"X-Amz-Invocation-Type: {t}")
    s.invoke(b'{"log":1}', headers=[("X-Amz-Log-Type", "Tail")], label="X-Amz-Log-Type: Tail")


def invoke_keepalive(s: Session):
    s.invokes_on_one_connection([b'{"n":1}', b'{"n":2}', b'{"n":3}'], label="keep-alive invoke")


def invoke_not_found(s: Session):
    for path in ["/2015-03-31/functions/other/invocations", INVOKE_PATH + "/", "/",
                 "/2021-11-15/functions/function/response-streaming-invocations",
                 "/2015-03-31/functions/function/invoke"]:
        s.invoke(b"{}", path=path, label=path)


# --------------------------------------------------------------------------------------------
# environment and command line


ENV_KEYS = ("AWS_", "LAMBDA_", "_HANDLER", "_X_AMZN", "TZ", "LANG")


def runtime_env(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    ev = hand.event()
    rt = hand.runtime
    s.note("runtime argv", rt["argv"])
    s.note("runtime cwd", rt["cwd"])
    s.note("runtime has its own process group", rt["pgid"] == rt["pid"])
    s.note("runtime env", {k: v for k, v in sorted(rt["env"].items()) if k.startswith(ENV_KEYS)})
    s.respond(ev.request_id, b'"ok"')
    hand.poll_next()
    inv.result()


def next_only(s: Session):
    hand = Hand(s)
    cycle(s, hand, b"{}", ok(s), label="invoke", next_label="next")
    s.note("runtime argv", hand.runtime["argv"])


def log_level_invalid(s: Session):
    s.note("exit code", s.server.wait_exit())


def init_caching(s: Session):
    hand = Hand(s)
    inv = s.invoke_bg(b"{}", label="invoke")
    ev = hand.event("next")
    env = hand.runtime["env"]
    s.note("credentials env", {k: env.get(k) for k in ("AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                                      "AWS_CONTAINER_AUTHORIZATION_TOKEN")})
    token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or "none-given"
    s.rapi("GET", "/2021-04-23/credentials", headers=[("Authorization", token)], label="credentials")
    s.rapi("GET", "/2021-04-23/credentials", headers=[("Authorization", f"Bearer {token}")],
           label="credentials with Bearer")
    s.rapi("GET", "/2021-04-23/credentials", label="credentials without token")
    s.respond(ev.request_id, b'"ok"')
    hand.poll_next()
    inv.result()


# --------------------------------------------------------------------------------------------
# extensions API


EXT = "/2020-01-01/extension"


def extensions(s: Session):
    s.rapi("POST", f"{EXT}/register", b'{"events":["INVOKE"]}', label="register without a name")
    s.rapi("POST", f"{EXT}/event/next", label="POST event/next")
    s.rapi("GET", f"{EXT}/event/next", label="event/next without identifier")
    s.rapi("GET", f"{EXT}/event/next", headers=[("Lambda-Extension-Identifier", "nope")],
           label="event/next with a bad identifier")
    s.rapi("GET", f"{EXT}/event/next",
           headers=[("Lambda-Extension-Identifier", "0e0e0e0e-0000-4000-8000-000000000000")],
           label="event/next with an unknown identifier")
    inv = s.invoke_bg(b'{"n":1}', headers=[("X-Amzn-Trace-Id", TRACE)], label="invoke")
    s.runtime_started()
    name = [("Lambda-Extension-Name", "ext1")]
    s.rapi("POST", f"{EXT}/register", b"{no", headers=name, label="register with invalid JSON")
    s.rapi("POST", f"{EXT}/register", b'{"events":["SHUTDOWN"]}',
           headers=[("Lambda-Extension-Name", "ext2")], label="register an internal extension for SHUTDOWN")
    reg = s.rapi("POST", f"{EXT}/register", b'{"events":["INVOKE"]}', headers=name,
                 label="register during init")
    s.rapi("POST", f"{EXT}/register", b'{"events":["INVOKE"]}', headers=name,
           label="register the same name again")
    ext_id = reg.header("Lambda-Extension-Identifier")
    if ext_id is None:  # no Extensions API: finish the invoke, the transcript shows the rest
        ev = s.next("runtime next")
        s.respond(ev.request_id, b'"ok"', label="response")
        s.next_bg()
        inv.result()
        return
    ident = [("Lambda-Extension-Identifier", ext_id)]
    s.rapi("POST", f"{EXT}/init/error", b"{}", headers=ident, label="extension init/error without error type")
    ext_next = Background(s, "extension event/next", f"GET {EXT}/event/next",
                          Pending(http, s.server.rapi, "GET", f"{EXT}/event/next", headers=ident))
    ev = s.next("runtime next")
    ext_next.result()
    s.respond(ev.request_id, b'"ok"', label="response")
    s.next_bg()
    s.note("caller answered before the extension polls again", inv.answered_within(GRACE_S))
    Background(s, None, "", Pending(http, s.server.rapi, "GET", f"{EXT}/event/next", headers=ident))
    inv.result()
    s.rapi("POST", f"{EXT}/register", b'{"events":["INVOKE"]}',
           headers=[("Lambda-Extension-Name", "ext3")], label="register after init")


# --------------------------------------------------------------------------------------------
# external extensions: an executable of /opt/extensions, started by the target (each run has a
# private /opt). The server's stop after the steps is what delivers SHUTDOWN.


def ext_invokes(s: Session):
    s.invoke(b'{"n":1}', headers=[("X-Amzn-Trace-Id", TRACE)], label="invoke with a trace id")
    s.invoke(b'{"n":2}', label="invoke without one")


def ext_work_after_response(s: Session):
    """The extension (EXT_MODE=gate) holds each INVOKE at the test's gate until released."""
    inv = s.invoke_bg(b'{"n":1}', label="invoke")
    s.note("the extension works on", s.gate.meet())
    s.note("caller answered while the extension works", inv.answered_within(GRACE_S))
    s.gate.release_all()
    inv.result()
    again = s.invoke_bg(b'{"n":2}', label="next invoke")
    s.note("the extension works on the next", s.gate.meet())
    s.gate.release_all()
    again.result()


def ext_fails_mid_invoke(s: Session):
    """The extension ends (crash, exit/error) as it gets INVOKE while the runtime holds the event."""
    hand = Hand(s)
    inv = s.invoke_bg(b'{"n":1}', label="invoke")
    ev = hand.event("runtime next")
    s.note("caller answered before the runtime responds", inv.answered_within(GRACE_S))
    s.respond(ev.request_id, b'"late"', label="runtime responds after the extension ended")
    inv.result()
    s.server_exit()


def ext_stopped_while_working(s: Session):
    """The server is told to stop while the extension holds an INVOKE at the gate; released once
    the server says it is shutting down, it asks for its next event and gets SHUTDOWN."""
    inv = s.invoke_bg(b'{"n":1}', label="invoke")
    s.note("the extension works on", s.gate.meet())
    s.note("caller answered while the extension works", inv.answered_within(GRACE_S))
    stopping = Pending(lambda first_data: s.server.stop())
    s.note("the server says it shuts down", s.server.wait_stderr("Shutting down"))
    s.gate.release_all()
    stopping.wait(SAFETY_S)
    inv.result()


def ext_slow_shutdown(s: Session):
    """The extension ignores SIGTERM and never finishes its SHUTDOWN: the server stops anyway, and
    nothing it started outlives it."""
    s.invoke(b'{"n":1}', label="invoke")
    s.server.stop()
    s.note("processes left running after the server exited", s.server.left_running)


def extension_init_error(message: str) -> dict:
    """The deviation extension-init-error-body for both invokes of `ext_init_fails`."""
    body = f'{{"errorType":"Extension.InitError","errorMessage":"Extension recorder failed to initialize: {message}"}}'
    change = {"headers": {"Content-Type": "text/plain; charset=utf-8", "X-Amz-Function-Error": "Unhandled"},
              "body": body}
    return {"invoke": change, "invoke again": change}


def ext_init_fails(s: Session):
    s.invoke(b'{"n":1}', label="invoke")
    s.invoke(b'{"n":2}', label="invoke again")
    s.server_exit()


# --------------------------------------------------------------------------------------------
# real runtimes: awslambdaric, the bash + curl bootstrap


def ric_echo(s: Session):
    s.invoke(b'{"hello":"world"}', label="first invoke")
    s.invoke(b'{"hello":"again"}', label="second invoke")


def ric_context(s: Session):
    cc = base64.b64encode(json.dumps({"custom": {"foo": "bar"}}).encode()).decode()
    s.invoke(b'{"timeout_ms": 3000}', headers=[("X-Amz-Client-Context", cc), ("X-Amz-Tenant-Id", "t-1")],
             label="context")


def ric_one(label: str, payload: bytes = b"{}"):
    def steps(s: Session):
        s.invoke(payload, label=label)
        s.invoke(payload, label=f"{label}, again")
    return steps


def bash_curl(s: Session):
    s.invoke(b'{"hello":"bash"}', label="echo")
    s.invoke(b'{"big":1}', label="2 MB response (curl sends Expect: 100-continue)")
    s.invoke(b'{"fail":1}', label="handler fails, set -e ends the bootstrap")
    s.invoke(b'{"hello":"again"}', label="next invoke re-inits")


# --------------------------------------------------------------------------------------------
# The table

FE = "function-error-header"

SCENARIOS: list[Scenario] = [
    # Runtime API routes
    Scenario("rapi-listening-at-startup",
             "both listeners are up at startup, before the runtime is started",
             listening_at_startup),
    Scenario("rapi-not-found", "unknown path, version, case, trailing slash -> 404 text",
             in_flight(rapi_not_found)),
    Scenario("rapi-wrong-method", "wrong method -> 405, empty body, Allow; HEAD is not GET",
             in_flight(rapi_wrong_method)),
    Scenario("ping", "GET ping -> 200 pong", in_flight(ping)),
    Scenario("logs-telemetry-stubs", "Logs and Telemetry APIs are 202 stubs with error bodies",
             in_flight(logs_telemetry_stubs), deviations={"real-telemetry": {
                 label: {"status": 403, "body": '{"errorMessage":"Missing Lambda-Extension-Identifier header",'
                                               '"errorType":"Extension.MissingExtensionIdentifier"}\n'}
                 for label in ("logs", "telemetry")}}),
    Scenario("metadata-endpoint", "execution-environment metadata with the Bearer token",
             metadata),
    # /next
    Scenario("next-headers", "/next headers and body; Content-Type always application/json",
             next_headers),
    Scenario("next-repeated", "a second /next during the invoke returns the same event",
             next_repeated),
    Scenario("next-invoke-headers",
             "client context decoded, tenant id copied, no trace id, no cognito",
             next_invoke_headers,
             deviations={"trace-id-on-next": {"next": {"headers": {"Lambda-Runtime-Trace-Id": TRACE}}}}),
    Scenario("client-context-invalid", "invalid X-Amz-Client-Context -> 500 empty, not invoked",
             client_context_invalid),
    Scenario("payload-truncated", "payloads over 6,291,556 bytes are cut off silently",
             payload_truncated, timeout_s=10),
    Scenario("payload-empty-and-binary", "payloads and responses are not validated",
             payload_empty_and_binary),
    Scenario("next-before-first-invoke",
             "/next before the runtime was started: RIE drops the connection",
             next_before_first_invoke,
             deviations={"next-blocks-until-invoke": {
                 "next before any invoke answered at once": {"note": False},
                 "next before any invoke": {"outcome": "response", "status": 200,
                                            "from": "next after the invoke"},
                 "next after the invoke": {"absent": True}}}),
    # /response
    Scenario("response-content-types", "the caller's Content-Type is sniffed from the body",
             response_content_types),
    Scenario("response-released-by-next",
             "the caller is answered when the runtime polls /next again",
             response_released_by_next,
             deviations={"release-on-response": {
                 "caller answered before the runtime polls /next again": {"note": True}}}),
    Scenario("response-then-no-next",
             "a response posted but never followed by /next, until the timeout",
             response_then_no_next, timeout_s=1,
             deviations={"release-on-response": {"invoke": {"status": 200, "body": '"done"',
                                                            "headers": {"Content-Type": "text/plain; charset=utf-8"}}}}),
    Scenario("response-then-exit", "response posted, runtime exits before /next -> 502 + body",
             response_then_exit,
             deviations={"release-on-response": {"invoke": {"status": 200}, "platform log": {"note": [
                 "START RequestId: <id1> Version: $LATEST", "END RequestId: <id1>",
                 "REPORT RequestId: <id1>\tInit Duration: <ms> ms\tDuration: <ms> ms\tBilled Duration: <ms> ms"
                 "\tMemory Size: 3008 MB\tMax Memory Used: <measured> MB\t"]}}}),
    Scenario("request-id-checks", "unknown, upper-cased, empty, finished ids -> 400",
             request_id_checks),
    Scenario("double-response", "a second result before /next -> 403 with state names",
             double_response),
    Scenario("double-error", "a second /error before /next -> 403", double_error,
             deviations={FE: {"invoke": {}}}),
    Scenario("response-mode-streaming", "mode 'streaming' is accepted",
             response_mode_streaming_accepted),
    Scenario("response-mode-capitalised", "mode 'Streaming' -> 400, then RIE wedges until timeout",
             response_mode_invalid("Streaming"), timeout_s=1,
             deviations={"response-mode-no-wedge": {}, FE: {"invoke": {}}}),
    Scenario("response-mode-buffered", "mode 'buffered' -> 400, then RIE wedges until timeout",
             response_mode_invalid("buffered"), timeout_s=1,
             deviations={"response-mode-no-wedge": {}, FE: {"invoke": {}}}),
    Scenario("response-size-limit", "6,291,556 bytes -> 202; one more -> 413 + SizeTooLarge",
             response_size_limit, timeout_s=10,
             deviations={FE: {"invoke answered with 6,291,557 bytes": {}}}),
    Scenario("response-chunked", "a chunked response body is accepted", response_chunked),
    Scenario("streaming-relay", "RIE buffers a streamed response until it ends",
             streaming_relay,
             deviations={"streaming-relay": {"relay": {"note": {
                 "first chunk reached the caller while the stream was open": True}}}}),
    Scenario("streaming-error-trailers", "RIE drops error trailers: 200 with the partial body",
             streaming_error_trailers,
             deviations={"streaming-relay": {"invoke": {"trailers": {
                 "Lambda-Runtime-Function-Error-Type": "Function.StreamErr",
                 "Lambda-Runtime-Function-Error-Body":
                     base64.b64encode(b'{"errorMessage":"mid-stream","errorType":"StreamErr"}').decode()}}}}),
    Scenario("streaming-too-large", "a 7 MiB stream -> 413 + SizeTooLarge",
             streaming_too_large, timeout_s=10,
             deviations={"stream-size-limit": {
                 "7 MiB streamed response": {"status": 202, "body": '{"status":"OK"}\n'},
                 "invoke": {"body": {"bytes": 7340032, "sha256": "d5dbec556b691fda"}}}}),
    # /error
    Scenario("error-bodies", "error bodies; error.cause+json is filtered; type never visible",
             error_bodies,
             deviations={FE: {name: {} for name in [
                 "error.cause+json is re-serialised", "error.cause+json without stackTrace",
                 "error.cause+json that is not JSON", "application/json is verbatim",
                 "text is verbatim", "empty body", "error type header is not visible"]}}),
    Scenario("error-too-large", "an /error body over the limit drops the connection, then timeout",
             error_too_large, timeout_s=1,
             deviations={FE: {"invoke": {}}, "error-size-limit": {
                 "error of 6,291,557 bytes": {"outcome": "response", "status": 413,
                                              "headers": {"Content-Type": "application/json"},
                                              "body": '{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}\n'},
                 "invoke": {"body": '{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes)."}'}}}),
    # init
    Scenario("init-error-then-exit",
             "/init/error then exit -> 502 with that body, kept for later failures",
             init_error_then_exit,
             deviations={FE: {"invoke": {}, "second invoke, runtime exits mid-invoke": {}},
                         "no-cached-init-error": {"second invoke, runtime exits mid-invoke": {
                             "body": '{"errorType":"Runtime.ExitError","errorMessage":"RequestId: <id2> Error: '
                                     'Runtime exited with error: exit status 7"}'}}}),
    Scenario("init-error-stay-alive", "/init/error and the runtime stays -> timeout",
             init_error_stay_alive, timeout_s=1,
             deviations={FE: {"invoke": {}}, "report-values": {"platform log": {"no init duration on": ["<id1>"]}}}),
    Scenario("init-error-after-init", "/init/error after init -> 403", init_error_after_init),
    Scenario("init-exit-code-3", "exit during init without /init/error -> empty 502",
             init_exit_without_init_error(3),
             deviations={"init-exit-body": {"invoke": {"body": '{"errorType":"Runtime.ExitError","errorMessage":"RequestId: <id1> Error: '
                         'Runtime exited with error: exit status 3"}',
                 "headers": {"Content-Type": "text/plain; charset=utf-8"}}}, FE: {"invoke": {}},
                         "report-values": {"platform log": {"init duration on": ["<id2>"]}}}),
    Scenario("init-exit-code-0", "exit 0 during init without /init/error -> empty 502",
             init_exit_without_init_error(0),
             deviations={"init-exit-body": {"invoke": {"body": '{"errorType":"Runtime.ExitError","errorMessage":"RequestId: <id1> Error: '
                         'Runtime exited without providing a reason"}',
                 "headers": {"Content-Type": "text/plain; charset=utf-8"}}}, FE: {"invoke": {}},
                         "report-values": {"platform log": {"init duration on": ["<id2>"]}}}),
    Scenario("bootstrap-missing", "a missing bootstrap fails every invoke with an empty 502",
             bootstrap_missing, args=("{dir}/no-such-bootstrap",),
             deviations={FE: {"first invoke": {}, "second invoke": {}},
                         "invalid-entrypoint-body": {
                             f"{which} invoke": {
                                 "headers": {"Content-Type": "text/plain; charset=utf-8"},
                                 "body": '{"errorType":"Runtime.InvalidEntrypoint","errorMessage":"RequestId: '
                                         f'<id{n}> Error: fork/exec <fndir>/no-such-bootstrap: no such file or directory"}}'}
                             for n, which in ((1, "first"), (2, "second"))}}),
    # exits, timeouts, concurrency
    Scenario("exit-mid-invoke", "exit 7, exit 0, SIGKILL mid-invoke -> 502 ExitError",
             exit_mid_invoke,
             deviations={FE: {"runtime ends mid-invoke: exit 7": {}, "runtime ends mid-invoke: exit 0": {},
                              "runtime ends mid-invoke: SIGKILL": {}},
                         "report-values": {"platform log": {"init duration on": ["<id4>"]}}}),
    Scenario("timeout", "timeout -> 200 text; late calls -> 400; next invoke re-inits",
             timeout, timeout_s=1,
             deviations={FE: {"invoke that times out": {}},
                         "next-blocks-until-invoke": {"late next answered at once": {"note": False},
                                                      "late next": {"absent": True}},
                         "report-values": {"platform log": {"init duration on": ["<id2>"]}}}),
    Scenario("concurrent-invokes", "a second invoke while one is in flight crashes RIE",
             concurrent_invokes, deviations={"queue-concurrent-invokes": {}}),
    # invoke side
    Scenario("invoke-methods", "any method invokes; Qualifier, type and log type ignored",
             invoke_methods, args=ric("app.echo"), files="ric"),
    Scenario("invoke-keepalive", "three invokes on one keep-alive connection",
             invoke_keepalive, args=ric("app.echo"), files="ric"),
    Scenario("invoke-not-found", "other paths -> 404 text", invoke_not_found,
             args=ric("app.echo"), files="ric"),
    # environment and command line
    Scenario("runtime-env", "argv, cwd, process group and environment of the runtime",
             runtime_env),
    Scenario("env-function-name-and-handler",
             "AWS_LAMBDA_FUNCTION_NAME in the ARN; AWS_LAMBDA_FUNCTION_HANDLER wins",
             runtime_env, env={"AWS_LAMBDA_FUNCTION_NAME": "my-fn", "AWS_LAMBDA_FUNCTION_HANDLER": "a.b",
                               "AWS_LAMBDA_FUNCTION_VERSION": "7", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                               "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKID"}),
    Scenario("flags-anywhere", "RIE flags after the bootstrap are RIE's; unknown flags pass through",
             next_only, args=(*HOLD, "--log-level", "debug", "--help", "x.y")),
    Scenario("init-caching", "--enable-init-caching: credentials endpoint and its env",
             init_caching, args=("--enable-init-caching", *HOLD),
             env={"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "SECRET", "AWS_SESSION_TOKEN": "TOK"}),
    Scenario("log-level-invalid", "an invalid --log-level exits 1", log_level_invalid,
             args=("--log-level", "loud", *HOLD), expect_exit=True),
    # extensions
    Scenario("extensions", "register, event/next, errors, init gating, registration closed",
             extensions, deviations={"release-on-response": {
                 "caller answered before the extension polls again": {"note": True}},
                 "trace-id-on-next": {"runtime next": {"headers": {"Lambda-Runtime-Trace-Id": TRACE}}}}),
    # external extensions
    Scenario("external-extension-python", "a Python extension in /opt/extensions registers, gets "
             "INVOKE per invocation (request id, deadline, ARN, tracing) and SHUTDOWN as the server stops",
             ext_invokes, args=ric("app.echo"), files="ric", extension=("recorder", "recorder.py")),
    Scenario("external-extension-curl", "the same with a shell script extension using curl",
             ext_invokes, args=ric("app.echo"), files="ric",
             extension=("curl-extension", "curl-extension.sh")),
    Scenario("external-extension-work-after-response",
             "an extension that works on after the runtime's response holds the environment",
             ext_work_after_response, args=ric("app.echo"), files="ric", env={"EXT_MODE": "gate"},
             timeout_s=10,  # the extension is held for GRACE_S: well within the function's timeout
             extension=("recorder", "recorder.py"), deviations={"release-on-response": {
                 "caller answered while the extension works": {"note": True}}}),
    Scenario("external-extension-stopped-while-working",
             "the server stops while an extension works on an invocation: SHUTDOWN once it asks again",
             ext_stopped_while_working, args=ric("app.echo"), files="ric", env={"EXT_MODE": "gate"},
             timeout_s=10,  # the extension is held for GRACE_S: well within the function's timeout
             extension=("recorder", "recorder.py"), deviations={"release-on-response": {
                 "caller answered while the extension works": {"note": True},
                 # RIE drops the caller it had not answered; its END and REPORT never come
                 "invoke": {"outcome": "response", "status": 200, "body": '{"n": 1}',
                            "headers": {"Content-Type": "text/plain; charset=utf-8"}},
                 "platform log": {"note": [
                     "START RequestId: <id1> Version: $LATEST", "END RequestId: <id1>",
                     "REPORT RequestId: <id1>\tInit Duration: <ms> ms\tDuration: <ms> ms\tBilled Duration: <ms> ms"
                     "\tMemory Size: 3008 MB\tMax Memory Used: <measured> MB\t"]}}}),
    Scenario("external-extension-slow-shutdown",
             "an extension that never finishes its SHUTDOWN is killed at the deadline",
             ext_slow_shutdown, args=ric("app.echo"), files="ric", env={"EXT_MODE": "slow-shutdown"},
             extension=("recorder", "recorder.py")),
    Scenario("external-extension-crash", "an extension that exits as it gets INVOKE",
             ext_fails_mid_invoke, env={"EXT_MODE": "crash"}, extension=("recorder", "recorder.py"),
             deviations={FE: {"invoke": {}}, "extension-failure-message": {"invoke": {"body": (
                 '{"errorType":"Extension.Crash","errorMessage":"RequestId: <id1> Error: extension recorder '
                 'crashed: exit status 3"}')}}}),
    Scenario("external-extension-exit-error", "an extension that posts exit/error as it gets INVOKE",
             ext_fails_mid_invoke, env={"EXT_MODE": "exit-error"}, extension=("recorder", "recorder.py"),
             deviations={FE: {"invoke": {}}, "extension-failure-message": {"invoke": {"body": (
                 '{"errorType":"Extension.ExitError","errorMessage":"RequestId: <id1> Error: extension recorder '
                 'exited with error Extension.Failed"}')}}}),
    Scenario("external-extension-init-error", "an extension that posts init/error",
             ext_init_fails, args=ric("app.echo"), files="ric", env={"EXT_MODE": "init-error"},
             extension=("recorder", "recorder.py"),
             deviations={"extension-init-error-body": extension_init_error("it reported Extension.ConfigInvalid")}),
    Scenario("external-extension-no-register", "an extension that exits before it registers",
             ext_init_fails, args=ric("app.echo"), files="ric", env={"EXT_MODE": "no-register"},
             extension=("recorder", "recorder.py"), deviations={"extension-init-error-body": extension_init_error(
                 "it exited before it registered (exit status 2)")}),
    # real runtimes
    Scenario("awslambdaric-echo", "awslambdaric success, warm second invoke",
             ric_echo, args=ric("app.echo"), files="ric"),
    Scenario("awslambdaric-context", "the context awslambdaric builds from /next",
             ric_context, args=ric("app.ctx"), files="ric"),
    Scenario("awslambdaric-exception", "handler exception -> 200 with the error JSON",
             ric_one("exception"), args=ric("app.boom"), files="ric",
             deviations={FE: {"exception": {}, "exception, again": {}}}),
    Scenario("awslambdaric-sys-exit", "sys.exit(3) in the handler -> 502 ExitError",
             ric_one("sys.exit(3)"), args=ric("app.bye"), files="ric",
             deviations={FE: {"sys.exit(3)": {}, "sys.exit(3), again": {}}}),
    Scenario("awslambdaric-import-error", "import error -> 502 with the init error body",
             ric_one("import error"), args=ric("badimport.handler"), files="ric",
             deviations={FE: {"import error": {}, "import error, again": {}}}),
    Scenario("awslambdaric-handler-missing", "missing handler -> 502 Runtime.HandlerNotFound",
             ric_one("missing handler"), args=ric("app.nope"), files="ric",
             deviations={FE: {"missing handler": {}, "missing handler, again": {}}}),
    Scenario("awslambdaric-too-large", "a response over the limit -> 413, awslambdaric exits -> 502",
             ric_one("7 MB result", b'{"n": 7000000}'), args=ric("app.big"), files="ric",
             timeout_s=10,
             deviations={FE: {"7 MB result": {}, "7 MB result, again": {}},
                         # the 413 answers the invoke: lambdalet releases the caller at once
                         "release-on-response": {"7 MB result": {"status": 200},
                                                 "7 MB result, again": {"status": 200},
                                                 "platform log": {"note": [
                     f"{line} RequestId: <id{n}>" + ("\tInit Duration: <ms> ms\tDuration: <ms> ms\tBilled "
                                                     "Duration: <ms> ms\tMemory Size: 3008 MB\tMax Memory "
                                                     "Used: <measured> MB\t" if line == "REPORT" else
                                                     " Version: $LATEST" if line == "START" else "")
                     for n in (1, 2) for line in ("START", "END", "REPORT")]}}}),
    Scenario("bash-curl-bootstrap", "the bash + curl runtime of the AWS Lambda Developer Guide's "
             "\"Tutorial: Building a custom runtime\"",
             bash_curl, args=BASH, files="bash",
             # The tutorial's bootstrap leaves a mktemp file per invocation: in the run's own directory.
             env={"TMPDIR": "."},
             deviations={FE: {"handler fails, set -e ends the bootstrap": {}},
                         "report-values": {"platform log": {"init duration on": ["<id4>"]}}}),
]

assert len({sc.name for sc in SCENARIOS}) == len(SCENARIOS), "scenario names must be unique"
# `pytest -k rie` must select exactly the RIE runs.
assert not any("rie" in sc.name for sc in SCENARIOS), "a scenario name must not contain 'rie'"
