"""Delivering one subscriber's telemetry (telemetry.py decides what and when): the trio shell.

Each batch goes to the subscriber's destination inside the execution environment: POSTed (or PUT)
as one HTTP request, or written to a TCP connection as newline-delimited JSON. A batch that is not
accepted (no listener yet, a connection refused or dropped, a status other than 2xx) is sent again
after a pause that doubles from RETRY_FIRST to RETRY_MAX, as long as the environment lives; what
arrives meanwhile waits in the subscriber's buffer, or is dropped and counted there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import trio

from .telemetry import Destination, Subscriber

RETRY_FIRST, RETRY_MAX = 0.05, 1.0
# A bound on one delivery, so that a listener that never answers is retried rather than waited on.
DELIVERY_TIMEOUT = 5.0

Connect = Callable[[int], Awaitable[trio.SocketStream]]


class Refused(Exception):
    """The destination did not accept the batch."""


async def deliver(subscriber: Subscriber, current: Callable[[], Subscriber | None],
                  changed: Callable[[], trio.Event], connect: Connect) -> None:
    """Send `subscriber`'s batches as they come due, until it is replaced (`current`) or cancelled."""
    pause = RETRY_FIRST
    while current() is subscriber:
        batch = subscriber.batch(trio.current_time())
        if batch is None:
            with trio.move_on_at(subscriber.deadline()):
                await changed().wait()
            continue
        try:
            with trio.fail_after(DELIVERY_TIMEOUT):
                await send(batch, subscriber.destination, connect)
        except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError, Refused):
            await trio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)
            continue
        subscriber.delivered()
        pause = RETRY_FIRST


async def send(batch: bytes, destination: Destination, connect: Connect) -> None:
    stream = await connect(destination.port)
    async with stream:
        if destination.protocol == "TCP":
            await stream.send_all(batch)
            return
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(method=destination.method, target=destination.path, headers=[
            ("Host", f"{destination.host}:{destination.port}"), ("Content-Type", "application/json"),
            ("Content-Length", str(len(batch)))])
        await stream.send_all(conn.send(request) + conn.send(h11.Data(data=batch)) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    raise Refused("the destination closed the connection before it answered")
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                if not 200 <= event.status_code < 300:
                    raise Refused(f"the destination answered {event.status_code}")
                return
