"""The Runtime API's answers to a runtime (or an extension): a `Reply` value, and the error
answers the real RIE gives, byte for byte.

A leaf module: the protocol and the extension registry decide which reply a request gets; the
route handlers only serialise it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bootstrap import wire

Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a runtime's (or an extension's) pending request."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Fields = ()  # besides Content-Type

    def fields(self) -> list[tuple[str, str]]:
        """Every header of the answer, Content-Type first."""
        head = [("Content-Type", self.content_type)] if self.content_type else []
        return [*head, *self.headers]


def api_error(status: int, error_type: str, message: str) -> Reply:
    """A Runtime API error answer: Go's encoder order (errorMessage first) and trailing newline."""
    body = json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":"))
    return Reply(status, (body + "\n").encode(), wire.JSON)


# What Go's http.Error sends with its text: RIE's 404s and its handlers' own plain-text errors.
GO_ERROR_HEADERS = (("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff"))


def go_text_error(status: int, text: str) -> Reply:
    """An error written by Go's http.Error: the text and a newline, as plain text."""
    return Reply(status, f"{text}\n".encode(), None, GO_ERROR_HEADERS)


ACCEPTED = Reply(202, b'{"status":"OK"}\n', wire.JSON)
RESTORED = Reply(200)  # restore/next: the runtime's restore goes on
INVALID_REQUEST_ID = api_error(400, "InvalidRequestID", "Invalid request ID")
INVALID_RESPONSE_MODE = api_error(400, "InvalidFunctionResponseMode", "Invalid function response mode")


def payload_too_large(limit: int) -> Reply:
    return api_error(413, "RequestEntityTooLarge", f"Exceeded maximum allowed payload size ({limit} bytes).")


PAYLOAD_TOO_LARGE = payload_too_large(wire.MAX_PAYLOAD_BYTES)


def invalid_transition(source: str, target: str) -> Reply:
    """The 403 for a request the runtime's state does not allow, naming both states (RIE's names)."""
    return api_error(
        403,
        "InvalidStateTransition",
        f"State transition from {source} to {target} failed for runtime. Error: State transition is not allowed",
    )
