"""One invocation as the host tracks it: the event the runtime receives, the deadline, and the
caller's reply (each invocation carries its own reply; there is no registry by request id).
"""

from __future__ import annotations

import os
import time

import trio

from bootstrap import wire

from .logs import TailBuffer
from .outcomes import Outcome, OutcomeKind, StreamError


def new_request_id() -> str:
    """A random (version 4) UUID as text: what str(uuid.uuid4()) gives, without building the UUID
    object on every invocation (RFC 9562, section 5.4: the version and variant bits set, the rest random)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda generates one when the caller sent none."""
    random = os.urandom(20).hex()  # the root's 96 bits and the parent's 64
    return f"Root=1-{int(time.time()):08x}-{random[:24]};Parent={random[24:]};Sampled=0"


class Invocation:
    """An invocation from arrival to its outcome.

    `deadline_ms` is the epoch-milliseconds deadline the runtime sees; it is fixed at the first
    delivery (or at arrival, RIE's rule) so a repeated `next` gets the same event.
    """

    def __init__(
        self,
        payload: bytes,
        *,
        function_arn: str,
        timeout: float,
        request_id: str | None = None,
        trace_id: str | None = None,
        client_context: str | None = None,
        cognito_identity: str | None = None,
        tenant_id: str | None = None,
        deadline_from_arrival: bool = False,
    ) -> None:
        self.request_id = request_id or new_request_id()
        self.payload = payload
        self.function_arn = function_arn
        self.timeout = timeout
        self.trace_id = trace_id or new_trace_id()
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.tenant_id = tenant_id
        self.arrived = trio.current_time()
        self.deadline_ms: int | None = None
        if deadline_from_arrival:
            self.deadline_ms = int((time.time() + timeout) * 1000)
        self.deadline_scope: trio.CancelScope | None = None
        self.delivered_at: float | None = None
        self.settled = trio.Event()
        self.outcome: Outcome | None = None
        self.finished = trio.Event()  # the whole response, streamed ones included, reached the caller
        self.log = TailBuffer()
        self.log_result: bytes | None = None  # the tail as it stood at END and REPORT
        self.reported = False  # END and REPORT written
        # Streaming: the runtime's chunks flow to the caller through this channel.
        self.stream_send: trio.MemorySendChannel[bytes] | None = None
        self.stream_receive: trio.MemoryReceiveChannel[bytes] | None = None
        self.stream_error: StreamError | None = None  # how a streamed response failed, for its trailers
        self.response_started_at: float | None = None  # when the runtime began to answer (telemetry's spans)
        self.streamed_bytes = 0  # a streamed response's size so far

    def __repr__(self) -> str:
        return f"<Invocation {self.request_id}>"

    def deliver(self) -> None:
        """The runtime receives the event now: the invoke phase (and Lambda's clock) starts."""
        if self.delivered_at is not None:
            return
        self.delivered_at = trio.current_time()
        if self.deadline_ms is None:
            self.deadline_ms = int((time.time() + self.timeout) * 1000)
            if self.deadline_scope is not None:
                self.deadline_scope.deadline = self.delivered_at + self.timeout

    def settle(self, outcome: Outcome) -> None:
        self.outcome = outcome
        if outcome.kind is OutcomeKind.STREAMING:
            self.stream_send, self.stream_receive = trio.open_memory_channel[bytes](0)
        self.settled.set()

    def next_headers(self) -> list[tuple[str, str]]:
        """The headers of the `next` response carrying this invocation, in canonical casing."""
        assert self.deadline_ms is not None
        headers = [
            (wire.REQUEST_ID, self.request_id),
            (wire.DEADLINE_MS, str(self.deadline_ms)),
            (wire.INVOKED_FUNCTION_ARN, self.function_arn),
            (wire.TRACE_ID, self.trace_id),
        ]
        if self.client_context is not None:
            headers.append((wire.CLIENT_CONTEXT, self.client_context))
        if self.cognito_identity is not None:
            headers.append((wire.COGNITO_IDENTITY, self.cognito_identity))
        if self.tenant_id is not None:
            headers.append((wire.TENANT_ID, self.tenant_id))
        headers.append(("Content-Type", wire.JSON))
        return headers

    def tail(self) -> bytes:
        """The last 4 KB of this invocation's log, for X-Amz-Log-Result."""
        return self.log_result if self.log_result is not None else self.log.value()

    def error_trailers(self) -> list[tuple[bytes, bytes]]:
        """A streamed response's error, as the trailers the caller receives (none if it ended well)."""
        return self.stream_error.trailers() if self.stream_error is not None else []
