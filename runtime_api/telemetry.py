"""The Telemetry API (2022-07-01) and the Logs API (2020-08-15) of one environment, with no I/O:
subscriptions, what each subscriber is sent, its buffer, its batches and what it loses.

As the AWS Lambda Developer Guide describes them ("Lambda Telemetry API", "Lambda Telemetry API
reference", "Lambda Telemetry API Event schema reference", "Lambda Logs API"):

* an external extension subscribes during init (`PUT /2022-07-01/telemetry` or `PUT
  /2020-08-15/logs`, never both) to the types `platform`, `function` and `extension`, naming a
  destination inside the execution environment (HTTP: `http://sandbox.localdomain:PORT/path`;
  TCP: a port) and a buffering of `maxItems` (1,000-10,000, default 10,000), `maxBytes`
  (262,144-1,048,576, default 262,144) and `timeoutMs` (25-30,000, default 1,000); anything else
  is a 400 naming what is wrong (`Telemetry.ValidationError`), an unreadable body too
  (`Telemetry.DeserializationError`), and a second subscription replaces the first (idempotent);
* each subscriber gets `{"time","type","record"}` events, from the environment's init on, in
  batches: a JSON array POSTed to its HTTP destination, or newline-delimited JSON on its TCP one,
  once `maxItems` events or `maxBytes` bytes are buffered or `timeoutMs` has passed since the first;
* while a batch is not accepted (the destination is down: the shell retries it) the buffer keeps
  at most another `maxItems` events and `maxBytes` bytes (twice that while no batch is out); what
  overflows is dropped, counted, and said by a `platform.logsDropped` event once delivery resumes;
* a Logs API subscriber gets the older records: `platform.start`, `platform.end`, `platform.report`
  with only the request id and metrics, `platform.logsSubscription`, `platform.runtimeDone` (schema
  2021-03-18 only), the log lines; none of the Telemetry API's init and restore events.

Which hosts name the environment itself: `sandbox.localdomain`, `sandbox`, `localhost` and
127.0.0.1 (`SANDBOX_HOSTS`); the shell (telemetry_delivery.py) delivers to the environment's own
loopback, inside its network namespace at isolation strict.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bootstrap import wire

from .replies import Reply, api_error

TELEMETRY, LOGS = "Telemetry", "Logs"
SCHEMA_VERSIONS = {TELEMETRY: ("2022-07-01", "2022-12-13", "2025-01-29"), LOGS: ("2020-08-15", "2021-03-18")}
DEFAULT_SCHEMA = {TELEMETRY: None, LOGS: "2020-08-15"}  # the Telemetry API requires one
TYPES = ("platform", "function", "extension")
# name: (default, minimum, maximum)
BUFFERING = {"maxItems": (10_000, 1_000, 10_000), "maxBytes": (262_144, 262_144, 1_048_576),
             "timeoutMs": (1_000, 25, 30_000)}
SANDBOX_HOSTS = frozenset({"sandbox.localdomain", "sandbox", "localhost", "127.0.0.1"})
RUNTIME_API_PORT = 9001  # Lambda reserves it
DROPPED_REASON = "Consumer seems to have fallen behind as it has not acknowledged receipt of logs."
OK = Reply(200, b'"OK"', wire.JSON)


@dataclass(frozen=True, slots=True)
class Destination:
    protocol: str  # HTTP or TCP
    port: int
    host: str = "sandbox.localdomain"
    path: str = "/"
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Event:
    """One telemetry event as the Telemetry API sends it."""

    time: str  # ISO 8601, milliseconds, UTC
    type: str
    record: object

    def encode(self) -> bytes:
        return json.dumps({"time": self.time, "type": self.type, "record": self.record},
                          separators=(",", ":"), ensure_ascii=False).encode()


def timestamp(wall: float | None = None) -> str:
    """Now (or `wall`, epoch seconds) as the Telemetry API writes times."""
    wall = time.time() if wall is None else wall
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


def _error(api: str, kind: str, message: str, status: int = 400) -> Reply:
    return api_error(status, f"{api}.{kind}", message)


def parse_subscription(api: str, body: bytes) -> tuple[str | None, tuple[str, ...], dict, Destination] | Reply:
    """A subscription request's schema version, types, buffering and destination, or the answer
    that refuses it."""
    try:
        request = json.loads(body)
    except ValueError as exc:
        return _error(api, "DeserializationError", str(exc))
    if not isinstance(request, dict):
        return _error(api, "DeserializationError", "the subscription request must be a JSON object")
    problems: list[str] = []
    version = request.get("schemaVersion", DEFAULT_SCHEMA[api])
    if version not in SCHEMA_VERSIONS[api]:
        problems.append(f"schemaVersion {version!r} is not one of {', '.join(SCHEMA_VERSIONS[api])}"
                        if version is not None else "schemaVersion is required")
    types = request.get("types")
    if not isinstance(types, list) or not types:
        problems.append("types should not be empty")
        types = []
    elif any(kind not in TYPES for kind in types):
        problems.append(f"types should be some of {', '.join(TYPES)}")
    elif len(set(types)) != len(types):
        problems.append("types should be unique")
    buffering = request.get("buffering") or {}
    settings = {}
    if not isinstance(buffering, dict):
        problems.append("buffering should be an object")
        buffering = {}
    for name, (default, low, high) in BUFFERING.items():
        value = buffering.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            problems.append(f"{name} should be between {low} and {high}")
        settings[name] = value
    destination = _destination(request.get("destination"), problems)
    if problems:
        return _error(api, "ValidationError", "; ".join(problems))
    if isinstance(destination, Reply):
        return destination
    return version, tuple(types), settings, destination


def _destination(value: object, problems: list[str]) -> Destination | Reply | None:
    if not isinstance(value, dict):
        problems.append("destination is required")
        return None
    protocol = value.get("protocol")
    if protocol not in ("HTTP", "TCP"):
        problems.append("destination.protocol should be HTTP or TCP")
        return None
    uri = value.get("URI")
    if protocol == "TCP" and uri is None:  # a port alone
        port = value.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            problems.append("URI port is not provided")
            return None
        return _checked_port(Destination("TCP", port), problems)
    if not isinstance(uri, str):
        problems.append("destination.URI is required")
        return None
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        problems.append(f"destination.URI {uri!r} is not a valid URI")
        return None
    if parts.scheme != ("http" if protocol == "HTTP" else parts.scheme) or not parts.hostname:
        problems.append(f"destination.URI {uri!r} should be http://sandbox.localdomain:PORT/path")
        return None
    if port is None:
        problems.append("URI port is not provided")
        return None
    if parts.hostname not in SANDBOX_HOSTS:
        # Lambda sends telemetry only inside the execution environment.
        return _error(TELEMETRY, "AccessDenied", f"destination host {parts.hostname!r} is not in the execution "
                      f"environment: use sandbox.localdomain", 403)
    method = value.get("method", "POST")
    if method not in ("POST", "PUT"):
        problems.append("destination.method should be POST or PUT")
        return None
    return _checked_port(Destination(protocol, port, parts.hostname, parts.path or "/", method), problems)


def _checked_port(destination: Destination, problems: list[str]) -> Destination | None:
    if destination.port == RUNTIME_API_PORT:
        problems.append(f"port {RUNTIME_API_PORT} is reserved")
        return None
    return destination


@dataclass
class Subscriber:
    """One extension's subscription, its buffer and what it has lost. The shell takes a `batch`
    when `due`, and says whether it was `delivered` or must be retried (`failed`)."""

    name: str
    api: str
    schema: str | None
    types: tuple[str, ...]
    max_items: int
    max_bytes: int
    timeout_ms: int
    destination: Destination
    _buffer: deque = field(default_factory=deque)  # encoded events
    _bytes: int = 0
    _since: float | None = None  # when the oldest buffered event came (trio's clock)
    in_flight: bytes | None = None  # a batch taken and not yet accepted
    dropped_records: int = 0
    dropped_bytes: int = 0
    flushing: bool = False  # send what there is now (the environment ends)

    def wants(self, event: Event) -> Event | None:
        """The event as this subscriber receives it, or None if it does not receive it."""
        kind = event.type
        category = kind if kind in ("function", "extension") else "platform"
        if category not in self.types:
            return None
        if self.api == TELEMETRY:
            return None if kind == "platform.logsSubscription" else event
        return _as_logs_api(event, self.schema)

    def add(self, event: Event, now: float) -> None:
        """Buffer an event: at most a batch beyond the one being sent (two while none is), so that
        memory stays bounded while the destination is behind; past that it is lost, and counted."""
        encoded = event.encode()
        batches = 1 if self.in_flight is not None else 2
        if len(self._buffer) >= batches * self.max_items or self._bytes + len(encoded) > batches * self.max_bytes:
            self.dropped_records += 1
            self.dropped_bytes += len(encoded)
            return
        self._buffer.append(encoded)
        self._bytes += len(encoded)
        if self._since is None:
            self._since = now

    def deadline(self) -> float:
        """When the buffered events are due, even if there are few (inf: nothing buffered)."""
        if not self._buffer and not self.dropped_records:
            return float("inf")
        if self.flushing or len(self._buffer) >= self.max_items or self._bytes >= self.max_bytes:
            return float("-inf")
        return (self._since or 0.0) + self.timeout_ms / 1000

    def batch(self, now: float) -> bytes | None:
        """The next batch to send (a retried one again until it is accepted), or None if none is due."""
        if self.in_flight is not None:
            return self.in_flight
        if now < self.deadline():
            return None
        events: list[bytes] = []
        if self.dropped_records:
            events.append(Event(timestamp(), "platform.logsDropped", {
                "droppedBytes": self.dropped_bytes, "droppedRecords": self.dropped_records,
                "reason": DROPPED_REASON}).encode())
            self.dropped_records = self.dropped_bytes = 0
        size = 0
        while self._buffer and len(events) < self.max_items and (not events or size < self.max_bytes):
            item = self._buffer.popleft()
            size += len(item)
            events.append(item)
        self._bytes -= size
        self._since = now if self._buffer else None
        if self.destination.protocol == "TCP":
            self.in_flight = b"".join(item + b"\n" for item in events)
        else:
            self.in_flight = b"[" + b",".join(events) + b"]"
        return self.in_flight

    def delivered(self) -> None:
        self.in_flight = None


def _as_logs_api(event: Event, schema: str | None) -> Event | None:
    """What a Logs API subscriber gets of an event (its older records), or None."""
    kind, record = event.type, event.record
    if kind in ("function", "extension", "platform.extension", "platform.logsSubscription", "platform.logsDropped"):
        return event
    if kind == "platform.start":
        return Event(event.time, kind, {"requestId": record["requestId"], "version": record.get("version")})
    if kind == "platform.runtimeDone":
        if schema == "2021-03-18":
            return Event(event.time, kind, {"requestId": record["requestId"], "status": record["status"]})
        return Event(event.time, "platform.end", {"requestId": record["requestId"]})
    if kind == "platform.report":
        return Event(event.time, kind, {"requestId": record["requestId"], "metrics": record["metrics"]})
    return None


class Telemetry:
    """The environment's subscribers, and the events they get: those of its init are kept, for
    the subscribers that subscribe during it, as Lambda sends each one the whole init."""

    def __init__(self) -> None:
        self.subscribers: dict[str, Subscriber] = {}  # by extension name
        self._init_events: list[Event] | None = []  # kept until init is over

    @property
    def listening(self) -> bool:
        """Whether an event emitted now reaches anyone (a subscriber, or one to come during init)."""
        return bool(self.subscribers) or self._init_events is not None

    def subscribe(self, api: str, name: str, body: bytes, now: float, *, open: bool) -> Reply:
        """A subscription request from the extension `name` (`open`: init is not over)."""
        if not open:
            return _error(api, "SubscriptionClosed", f"{api} API subscription is closed already", 403)
        parsed = parse_subscription(api, body)
        if isinstance(parsed, Reply):
            return parsed
        version, types, settings, destination = parsed
        current = self.subscribers.get(name)
        if current is not None and current.api != api:
            return _error(api, "ValidationError", f"The extension {name} is already subscribed to the "
                          f"{current.api} API: an extension subscribes to the Logs API or the Telemetry API")
        subscriber = Subscriber(name, api, version, types, settings["maxItems"], settings["maxBytes"],
                                settings["timeoutMs"], destination)
        self.subscribers[name] = subscriber
        for event in self._init_events or ():
            self._offer(subscriber, event, now)
        kind = "platform.telemetrySubscription" if api == TELEMETRY else "platform.logsSubscription"
        self.emit(Event(timestamp(), kind, {"name": name, "state": "Subscribed", "types": list(types)}), now)
        return OK

    def init_over(self) -> None:
        self._init_events = None

    def emit(self, event: Event, now: float) -> None:
        if self._init_events is not None:
            self._init_events.append(event)
        for subscriber in self.subscribers.values():
            self._offer(subscriber, event, now)

    @staticmethod
    def _offer(subscriber: Subscriber, event: Event, now: float) -> None:
        received = subscriber.wants(event)
        if received is not None:
            subscriber.add(received, now)

    def flush(self) -> None:
        """Send everything buffered now: the environment ends."""
        for subscriber in self.subscribers.values():
            subscriber.flushing = True
