"""The environment protocol state machine, driven with events and no sockets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from bootstrap import wire
from runtime_api import outcomes as o
from runtime_api import protocol as p
from runtime_api import replies as r

MODE = None


@dataclass
class Inv:
    request_id: str


def arrive(proto: p.EnvironmentProtocol, rid: str = "id-1") -> Inv:
    inv = Inv(rid)
    proto.handle(p.InvocationArrived(inv))
    return inv


# How to bring a fresh protocol into each state (with invocation "id-1" where one is in flight).
SETUP: dict[p.RuntimeState, list] = {
    p.RuntimeState.STARTED: [],
    p.RuntimeState.INIT_ERROR: [p.InitErrorPosted(b'{"errorType":"X"}', None)],
    p.RuntimeState.READY: [p.NextRequested()],
    p.RuntimeState.RUNNING: ["arrive", p.NextRequested()],
    p.RuntimeState.INVOCATION_RESPONSE: ["arrive", p.NextRequested(), p.ResponseStarted("id-1", None)],
    p.RuntimeState.RESPONSE_SENT: ["arrive", p.NextRequested(), p.ErrorPosted("id-1", b"{}", None, None)],
    p.RuntimeState.RESTORING: [p.RestoreNextRequested()],
    p.RuntimeState.RESTORE_ERROR: [p.RestoreNextRequested(), p.RestoreErrorPosted(b"{}", None)],
    p.RuntimeState.EXITED: [p.RuntimeExited(0)],
}

RUNTIME_EVENTS = [
    p.NextRequested(),
    p.ResponseStarted("id-1", None),
    p.ResponseFinished("id-1", b"ok"),
    p.ErrorPosted("id-1", b"{}", None, None),
    p.InitErrorPosted(b"{}", None),
    p.RestoreNextRequested(),
    p.RestoreErrorPosted(b"{}", None),
]


def in_state(state: p.RuntimeState) -> p.EnvironmentProtocol:
    proto = p.EnvironmentProtocol()
    for step in SETUP[state]:
        if step == "arrive":
            arrive(proto)
        else:
            proto.handle(step)
    assert proto.state is state
    return proto


def test_setup_reaches_every_state_but_the_unused_error_response_state():
    assert set(SETUP) == set(p.RuntimeState) - {p.RuntimeState.INVOCATION_ERROR_RESPONSE}


@pytest.mark.parametrize("state", list(SETUP), ids=lambda s: s.name)
@pytest.mark.parametrize("event", RUNTIME_EVENTS, ids=lambda e: type(e).__name__)
def test_every_state_and_runtime_event(state, event):
    """Each (state, event) pair either follows the table or is refused with RIE's exact error,
    leaving the state as it was."""
    proto = in_state(state)
    actions = proto.handle(event)
    carries_id = isinstance(event, p.ResponseStarted | p.ResponseFinished | p.ErrorPosted)
    in_flight = state in (p.RuntimeState.RUNNING, p.RuntimeState.INVOCATION_RESPONSE, p.RuntimeState.RESPONSE_SENT)
    target = p.TRANSITIONS[state].get(type(event))
    if carries_id and not in_flight:
        assert actions == [r.INVALID_REQUEST_ID]
        assert proto.state is state
    elif target is None:
        (reply,) = actions
        assert reply.status == 403
        body = json.loads(reply.body)
        assert body["errorType"] == "InvalidStateTransition"
        assert body["errorMessage"].startswith(f"State transition from {state.value} to ")
        assert body["errorMessage"].endswith(" failed for runtime. Error: State transition is not allowed")
        assert reply.body.endswith(b"\n")
        assert proto.state is state
    else:
        assert proto.state in (target, p.RuntimeState.RUNNING)


def test_a_whole_cycle_releases_the_caller_at_the_response_and_the_environment_at_next():
    proto = p.EnvironmentProtocol()
    assert proto.handle(p.NextRequested()) == [p.InitDone(), p.PARK]
    inv = Inv("abc")
    assert proto.handle(p.InvocationArrived(inv)) == [p.Wake()]
    assert proto.handle(p.NextRequested()) == [p.Deliver(inv)]
    assert proto.handle(p.ResponseStarted("abc", None)) == [p.ReadBody(streaming=False)]
    actions = proto.handle(p.ResponseFinished("abc", b'"hi"'))
    assert actions == [r.ACCEPTED, p.Settle(inv, o.Outcome(o.OutcomeKind.SUCCESS, b'"hi"'))]
    assert not proto.idle
    assert proto.handle(p.NextRequested()) == [p.CycleDone(), p.PARK]
    assert proto.idle and proto.invocations == 1


def test_an_invocation_arriving_during_init_goes_to_the_first_next():
    proto = p.EnvironmentProtocol()
    inv = arrive(proto)
    assert proto.handle(p.NextRequested()) == [p.InitDone(), p.Deliver(inv)]


def test_a_repeated_next_during_an_invocation_gets_the_same_event():
    proto = in_state(p.RuntimeState.RUNNING)
    (deliver,) = proto.handle(p.NextRequested())
    assert deliver.invocation.request_id == "id-1"
    assert proto.invocations == 1


def test_messages_name_rie_states():
    proto = in_state(p.RuntimeState.RESPONSE_SENT)
    (reply,) = proto.handle(p.ResponseStarted("id-1", None))
    assert reply.body == (
        b'{"errorMessage":"State transition from RuntimeResponseSentState to InvocationResponse failed for runtime.'
        b' Error: State transition is not allowed","errorType":"InvalidStateTransition"}\n'
    )
    (reply,) = proto.handle(p.ErrorPosted("id-1", b"", None, None))
    assert b"to InvocationErrorResponse failed" in reply.body
    (reply,) = in_state(p.RuntimeState.INIT_ERROR).handle(p.NextRequested())
    assert b"from InitError to Ready" in reply.body
    (reply,) = in_state(p.RuntimeState.RUNNING).handle(p.InitErrorPosted(b"", None))
    assert b"from Running to InitError" in reply.body


def test_unknown_and_stale_request_ids_are_invalid():
    proto = in_state(p.RuntimeState.RUNNING)
    assert proto.handle(p.ResponseStarted("ID-1", None)) == [r.INVALID_REQUEST_ID]
    assert proto.handle(p.ErrorPosted("", b"", None, None)) == [r.INVALID_REQUEST_ID]
    proto.handle(p.ErrorPosted("id-1", b"{}", None, None))
    proto.handle(p.NextRequested())
    assert proto.handle(p.ResponseStarted("id-1", None)) == [r.INVALID_REQUEST_ID]
    assert r.INVALID_REQUEST_ID.body == b'{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}\n'


@pytest.mark.parametrize("mode", ["Streaming", "buffered", ""])
def test_an_invalid_response_mode_is_refused_without_wedging_the_environment(mode):
    proto = in_state(p.RuntimeState.RUNNING)
    assert proto.handle(p.ResponseStarted("id-1", mode)) == [r.INVALID_RESPONSE_MODE]
    assert proto.state is p.RuntimeState.RUNNING
    actions = proto.handle(p.ErrorPosted("id-1", b'{"errorType":"E"}', None, None))
    assert actions[0] == r.ACCEPTED


def test_streaming_settles_the_caller_when_the_stream_starts():
    proto = in_state(p.RuntimeState.RUNNING)
    inv = proto.invocation
    actions = proto.handle(p.ResponseStarted("id-1", "streaming"))
    assert actions == [p.ReadBody(streaming=True, limit=p.STREAM_LIMIT_BYTES), p.Settle(inv, o.Outcome(o.OutcomeKind.STREAMING))]
    assert proto.handle(p.ResponseFinished("id-1", None)) == [r.ACCEPTED, p.EndStream(inv, None)]


def test_a_deadline_during_a_stream_kills_the_runtime():
    proto = in_state(p.RuntimeState.RUNNING)
    proto.handle(p.ResponseStarted("id-1", "streaming"))
    assert proto.handle(p.DeadlinePassed(3)) == [p.Kill("timeout")]


def test_too_large_responses_and_errors():
    for event in (p.ResponseFinished("id-1", b"", too_large=True), p.ErrorPosted("id-1", b"", None, None, too_large=True)):
        proto = in_state(p.RuntimeState.INVOCATION_RESPONSE if isinstance(event, p.ResponseFinished) else p.RuntimeState.RUNNING)
        reply, settle = proto.handle(event)
        assert reply.status == 413
        assert json.loads(reply.body) == {
            "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
            "errorType": "RequestEntityTooLarge",
        }
        assert json.loads(settle.outcome.body) == {
            "errorType": "Function.ResponseSizeTooLarge",
            "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        }


def test_a_timeout_settles_once_and_kills():
    proto = in_state(p.RuntimeState.RUNNING)
    settle, kill = proto.handle(p.DeadlinePassed(3.0))
    assert settle.outcome.kind is o.OutcomeKind.TIMEOUT
    assert json.loads(settle.outcome.body) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "RequestId: id-1 Error: Task timed out after 3.00 seconds",
    }
    assert kill == p.Kill("timeout")
    assert proto.handle(p.RuntimeExited(-9)) == []
    assert proto.handle(p.ResponseStarted("id-1", None)) == [r.INVALID_REQUEST_ID]


@pytest.mark.parametrize("status, reason", [
    (7, "Runtime exited with error: exit status 7"),
    (0, "Runtime exited without providing a reason"),
    (-9, "Runtime exited with error: signal: killed"),
])
def test_an_exit_mid_invocation(status, reason):
    proto = in_state(p.RuntimeState.RUNNING)
    (settle,) = proto.handle(p.RuntimeExited(status))
    assert json.loads(settle.outcome.body) == {
        "errorType": "Runtime.ExitError", "errorMessage": f"RequestId: id-1 Error: {reason}",
    }
    assert not proto.idle


def test_an_exit_after_the_response_settles_nothing_more():
    proto = in_state(p.RuntimeState.RESPONSE_SENT)
    assert proto.handle(p.RuntimeExited(1)) == []


def test_an_init_error_then_exit_gives_the_posted_body():
    proto = p.EnvironmentProtocol()
    inv = arrive(proto)
    body = b'{"errorMessage": "Unable to import module", "errorType": "Runtime.ImportModuleError"}'
    assert proto.handle(p.InitErrorPosted(body, "Runtime.ImportModuleError")) == [r.ACCEPTED]
    assert proto.handle(p.RuntimeExited(1)) == [
        p.Settle(inv, o.Outcome(o.OutcomeKind.INIT_ERROR, body, "Runtime.ImportModuleError"))
    ]


def test_an_exit_during_init_without_init_error_is_an_exit_error():
    proto = p.EnvironmentProtocol()
    arrive(proto)
    (settle,) = proto.handle(p.RuntimeExited(2))
    assert settle.outcome.error_type == "Runtime.ExitError"


def test_restore_contract():
    proto = p.EnvironmentProtocol()
    assert proto.handle(p.RestoreNextRequested()) == [p.InitDone(snapshot=True), p.RestoreStarted(), r.RESTORED]
    inv = arrive(proto)
    assert proto.handle(p.NextRequested()) == [p.RestoreDone(), p.Deliver(inv)]


def test_a_restore_error_then_exit_gives_the_posted_body():
    proto = p.EnvironmentProtocol()
    inv = arrive(proto)
    proto.handle(p.RestoreNextRequested())
    proto.handle(p.RestoreErrorPosted(b'{"errorType":"Runtime.AfterRestoreError"}', None))
    (settle,) = proto.handle(p.RuntimeExited(65))
    assert settle == p.Settle(inv, o.Outcome(o.OutcomeKind.RESTORE_ERROR, b'{"errorType":"Runtime.AfterRestoreError"}',
                                             "Runtime.AfterRestoreError"))



def test_an_invocation_arriving_after_its_runtime_posted_restore_error_gets_that_error():
    """A launched runtime may fail its restore before the invocation that launched it is handed over."""
    proto = p.EnvironmentProtocol()
    proto.handle(p.RestoreNextRequested())
    proto.handle(p.RestoreErrorPosted(b'{"errorType":"Runtime.AfterRestoreError"}', None))
    inv = Inv("id-1")
    assert proto.handle(p.InvocationArrived(inv)) == []
    (settle,) = proto.handle(p.RuntimeExited(65))
    assert settle == p.Settle(inv, o.Outcome(o.OutcomeKind.RESTORE_ERROR, b'{"errorType":"Runtime.AfterRestoreError"}',
                                             "Runtime.AfterRestoreError"))


def test_an_invocation_arriving_after_its_runtime_exited_gets_the_exit_error():
    proto = p.EnvironmentProtocol()
    assert proto.handle(p.RuntimeExited(2)) == []
    inv = Inv("id-1")
    (settle,) = proto.handle(p.InvocationArrived(inv))
    assert settle == p.Settle(inv, o.exit_outcome("id-1", 2))

def test_a_deadline_during_the_restore_is_a_restore_timeout():
    proto = p.EnvironmentProtocol()
    inv = arrive(proto)
    proto.handle(p.RestoreNextRequested())
    settle, kill = proto.handle(p.DeadlinePassed(3.0))
    assert settle == p.Settle(inv, o.Outcome(
        o.OutcomeKind.RESTORE_TIMEOUT, o.error_json("Sandbox.Timedout", o.RESTORE_TIMED_OUT), "Sandbox.Timedout"))
    assert kill == p.Kill("timeout") and proto.state is p.RuntimeState.EXITED


def test_handing_a_busy_environment_an_invocation_is_a_bug():
    proto = in_state(p.RuntimeState.RUNNING)
    with pytest.raises(p.ProtocolError):
        proto.handle(p.InvocationArrived(Inv("id-2")))


@pytest.mark.parametrize("body, content_type, expected", [
    (b'{"errorMessage":"m","errorType":"T","stackTrace":["a"],"errorCause":{},"extra":1}', wire.ERROR_CAUSE_JSON,
     b'{"errorMessage":"m","errorType":"T","stackTrace":["a"]}'),
    (b'{"errorMessage":"m","errorType":"T","stackTrace":[]}', wire.ERROR_CAUSE_JSON,
     b'{"errorMessage":"m","errorType":"T"}'),
    (b"not json", wire.ERROR_CAUSE_JSON, b'"Invalid error body"'),
    (b"not json", "application/json", b"not json"),
    (b"", None, b""),
])
def test_error_bodies_reach_the_caller_as_rie_forwards_them(body, content_type, expected):
    assert o.forwarded_error_body(body, content_type) == expected


def test_error_type_comes_from_the_header_or_the_body():
    assert o.error_type_of(b'{"errorType":"ValueError"}', None) == "ValueError"
    assert o.error_type_of(b"{}", "Function.X") == "Function.X"
    assert o.error_type_of(b"junk", None) == "Runtime.Unknown"


def test_a_staged_copy_waits_in_restore_next_until_its_first_invocation():
    """A SnapStart copy made ahead of demand stays where Lambda snapshots (restore/next) until an
    invocation wants it; then its restore begins and restore/next is answered."""
    proto = p.EnvironmentProtocol(start=p.Start.STAGED)
    assert proto.staged
    assert proto.handle(p.RestoreNextRequested()) == [p.PARK]
    assert proto.handle(p.RestoreNextRequested(), woken=True) == [p.PARK]
    assert proto.state is p.RuntimeState.STARTED
    inv = arrive(proto)
    assert not proto.staged and proto.restoring
    assert proto.handle(p.RestoreNextRequested(), woken=True) == [p.InitDone(), r.RESTORED]
    assert proto.handle(p.NextRequested()) == [p.RestoreDone(), p.Deliver(inv)]
    assert not proto.restoring


def test_a_copys_restore_began_as_it_was_made():
    proto = p.EnvironmentProtocol(start=p.Start.RESTORE)
    assert proto.restoring
    inv = arrive(proto)
    settle, kill = proto.handle(p.DeadlinePassed(3.0))
    assert settle == p.Settle(inv, o.RESTORE_TIMEOUT) and kill == p.Kill("timeout")


def test_a_copys_restore_next_is_not_a_snapshot_point():
    proto = p.EnvironmentProtocol(start=p.Start.RESTORE)
    assert proto.handle(p.RestoreNextRequested()) == [p.InitDone(), r.RESTORED]
    assert proto.initialised


def test_a_streamed_response_over_its_limit_is_cut_and_the_caller_told():
    proto = in_state(p.RuntimeState.RUNNING)
    inv = proto.invocation
    proto.handle(p.ResponseStarted("id-1", "streaming"))
    reply, end = proto.handle(p.ResponseFinished("id-1", None, too_large=True))
    assert reply.status == 413 and json.loads(reply.body)["errorType"] == "RequestEntityTooLarge"
    assert end.invocation is inv and end.error.error_type == "Function.ResponseSizeTooLarge"
    assert json.loads(end.error.body())["errorMessage"] == (
        f"Response payload size exceeded maximum allowed payload size ({p.STREAM_LIMIT_BYTES} bytes).")


def test_a_streams_error_trailers_reach_the_caller():
    proto = in_state(p.RuntimeState.RUNNING)
    proto.handle(p.ResponseStarted("id-1", "streaming"))
    _, end = proto.handle(p.ResponseFinished("id-1", None, error_type="Function.Boom", error_body="e30="))
    assert end.error == o.StreamError("Function.Boom", "e30=")


def test_a_broken_stream_ends_the_callers_stream_but_keeps_the_state():
    """The runtime's connection broke mid-stream: the caller's stream ends with an error; the
    environment waits for the deadline (or the runtime's exit) as before."""
    proto = in_state(p.RuntimeState.RUNNING)
    proto.handle(p.ResponseStarted("id-1", "streaming"))
    (end,) = proto.handle(p.ResponseAborted("id-1"))
    assert end.error.error_type == "Runtime.ExitError"
    assert proto.state is p.RuntimeState.INVOCATION_RESPONSE
    assert proto.handle(p.ResponseAborted("id-1")) == []
    assert proto.handle(p.DeadlinePassed(3)) == [p.Kill("timeout")]


def test_the_metadata_endpoint_checks_method_and_token():
    proto = p.EnvironmentProtocol(endpoints=p.Endpoints(metadata_token="t", availability_zone_id="euw1-az1"))
    (reply,) = proto.handle(p.MetadataRequested("GET", "Bearer t"))
    assert (reply.status, reply.body) == (200, b'{"AvailabilityZoneID":"euw1-az1"}')
    (reply,) = proto.handle(p.MetadataRequested("GET", "Bearer x"))
    assert (reply.status, reply.body) == (401, b"Unauthorized\n")
    (reply,) = proto.handle(p.MetadataRequested("POST", "Bearer t"))
    assert (reply.status, reply.body) == (405, b"Method Not Allowed\n")


def test_credentials_are_answered_only_after_init_and_only_for_the_token():
    proto = p.EnvironmentProtocol(endpoints=p.Endpoints(credentials=b'{"AccessKeyId":"a"}', credentials_token="tok"))
    (reply,) = proto.handle(p.CredentialsRequested("tok"))
    assert reply.status == 404  # not initialised yet
    proto.handle(p.NextRequested())
    (reply,) = proto.handle(p.CredentialsRequested("tok"))
    assert (reply.status, reply.body) == (200, b'{"AccessKeyId":"a"}')
    (reply,) = proto.handle(p.CredentialsRequested("other"))
    assert reply.status == 404 and reply.body == b"cannot get credentials for the provided token\n"


def test_every_event_type_has_a_handler():
    """The dispatch tables cover every event of the union (a new event without a handler fails here)."""
    for event_type in p.Event.__args__:
        assert event_type in p._HANDLERS or event_type in p._TRANSITION_ACTIONS, event_type
