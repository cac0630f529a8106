"""A function's settings for asynchronous invocation, as Lambda defines them: its
`EventInvokeConfig` (retries, maximum event age, destinations on success and on failure) and its
`DeadLetterConfig`, in Lambda's own shape. The Lambda API (`PutFunctionEventInvokeConfig`...), the
TOML config file (`event_invoke_config = {...}`) and a template's `AWS::Lambda::EventInvokeConfig`
all give the same document, decoded here, once.

Where a record may go (`Target`): another function served here (by ARN or name), a file of JSON
lines (`file:records.jsonl`, lambdalet's own, for inspection), or an AWS service (SQS, SNS,
EventBridge, S3) through an endpoint the server is given (`--service-endpoint sqs=http://...`).
Validation answers what Lambda answers, with its words (the Lambda API reference, and the answers
LocalStack's recorded tests hold).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import msgspec

from ..invoke_api import ServiceError

DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600  # seconds: six hours
RETRY_RANGE = (0, 2)
AGE_RANGE = (60, 21600)
SERVICES = ("sqs", "sns", "events", "s3")  # AWS services a record can go to
SERVICE_NAMES = {"sqs": "Amazon SQS", "sns": "Amazon SNS", "events": "Amazon EventBridge", "s3": "Amazon S3"}
DESTINATION_PATTERN = r"^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)"
_DESTINATION = re.compile(DESTINATION_PATTERN.removeprefix("^$|"))
_FUNCTION_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:(?P<name>[a-zA-Z0-9_-]{1,64})"
                           r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?\Z")
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")
FILE = "file:"


class OnDestination(msgspec.Struct, rename="pascal", omit_defaults=True, forbid_unknown_fields=True):
    destination: str | None = None


class DestinationConfig(msgspec.Struct, rename="pascal", forbid_unknown_fields=True):
    on_success: OnDestination = msgspec.field(default_factory=OnDestination)
    on_failure: OnDestination = msgspec.field(default_factory=OnDestination)


class EventInvokeConfig(msgspec.Struct, rename="pascal", omit_defaults=True, forbid_unknown_fields=True):
    """`MaximumRetryAttempts`, `MaximumEventAgeInSeconds`, `DestinationConfig`: Lambda's
    FunctionEventInvokeConfig without its `FunctionArn` and `LastModified`."""

    maximum_retry_attempts: int | None = None
    maximum_event_age_in_seconds: int | None = None
    destination_config: DestinationConfig | None = None

    @property
    def retries(self) -> int:
        return DEFAULT_RETRIES if self.maximum_retry_attempts is None else self.maximum_retry_attempts

    @property
    def max_age(self) -> int:
        return DEFAULT_MAX_AGE if self.maximum_event_age_in_seconds is None else self.maximum_event_age_in_seconds

    @property
    def on_success(self) -> str | None:
        return self.destination_config.on_success.destination or None if self.destination_config else None

    @property
    def on_failure(self) -> str | None:
        return self.destination_config.on_failure.destination or None if self.destination_config else None


DEFAULT = EventInvokeConfig()


class FunctionEventInvokeConfig(msgspec.Struct, rename="pascal", omit_defaults=True):
    """What the Lambda API answers: the config, its function's ARN (qualified) and when it changed."""

    function_arn: str
    last_modified: float
    destination_config: DestinationConfig = msgspec.field(default_factory=DestinationConfig)
    maximum_retry_attempts: int | None = None
    maximum_event_age_in_seconds: int | None = None


class DeadLetterConfig(msgspec.Struct, rename="pascal", forbid_unknown_fields=True):
    target_arn: str


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """Where a record or a dead-letter message goes."""

    kind: str  # "function", "file", or one of SERVICES
    name: str  # the function's name, the file's path, or the service resource's ARN

    def __str__(self) -> str:
        return f"{FILE}{self.name}" if self.kind == "file" else self.name


def decode(body: bytes) -> EventInvokeConfig:
    """A Put/Update request's body; 400 SerializationException (as Lambda's front end) when it is not one."""
    try:
        return msgspec.json.decode(body or b"{}", type=EventInvokeConfig)
    except msgspec.ValidationError as exc:
        raise ServiceError(400, "SerializationException", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ServiceError(400, "SerializationException", f"Could not parse request body into json: {exc}") from None


def check_ranges(config: EventInvokeConfig) -> None:
    """Lambda's model constraints: 400 ValidationException, naming each value out of range."""
    errors = []
    for name, value, (low, high) in (("maximumRetryAttempts", config.maximum_retry_attempts, RETRY_RANGE),
                                     ("maximumEventAgeInSeconds", config.maximum_event_age_in_seconds, AGE_RANGE)):
        if value is not None and value < low:
            errors.append(f"Value '{value}' at '{name}' failed to satisfy constraint: Member must have value "
                          f"greater than or equal to {low}")
        elif value is not None and value > high:
            errors.append(f"Value '{value}' at '{name}' failed to satisfy constraint: Member must have value "
                          f"less than or equal to {high}")
    for field, destination in (("destinationConfig.onSuccess.destination", config.on_success),
                               ("destinationConfig.onFailure.destination", config.on_failure)):
        if destination is not None and (len(destination) > 350 or not (
                _DESTINATION.match(destination) or destination.startswith(FILE) or _NAME.match(destination))):
            errors.append(f"Value '{destination}' at '{field}' failed to satisfy constraint: Member must satisfy "
                          f"regular expression pattern: {DESTINATION_PATTERN}")
    if errors:
        count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected: "
        raise ServiceError(400, "ValidationException", count + "; ".join(errors))


def parse_target(text: str, *, base: Path | None = None) -> Target | None:
    """The target a destination names, or None when it names nothing lambdalet can send to (an ARN
    of another service, S3 as on-success...: the caller says why). `base`: the directory a relative
    file path is relative to."""
    if text.startswith(FILE):
        path = text.removeprefix(FILE)
        path = path.removeprefix("//") if path.startswith("///") else path
        return Target("file", str((base or Path.cwd()) / Path(path).expanduser()) if path else "")
    if _NAME.match(text):
        return Target("function", text)
    found = _FUNCTION_ARN.match(text)
    if found:
        return Target("function", found["name"])
    parts = text.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] in SERVICES:
        return Target(parts[2], text)
    return None


def with_defaults_shown(config: EventInvokeConfig) -> EventInvokeConfig:
    """The config with an empty DestinationConfig where it has none, as Lambda shows it."""
    if config.destination_config is None:
        return msgspec.structs.replace(config, destination_config=DestinationConfig())
    return config


def merge(old: EventInvokeConfig, new: EventInvokeConfig) -> EventInvokeConfig:
    """UpdateFunctionEventInvokeConfig: what `new` gives, over `old`."""
    changes = {field: getattr(new, field) for field in new.__struct_fields__ if getattr(new, field) is not None}
    return msgspec.structs.replace(old, **changes)


def is_empty(config: EventInvokeConfig) -> bool:
    return all(getattr(config, field) is None for field in config.__struct_fields__)


def describe_destination_config(config: EventInvokeConfig) -> str:
    """Lambda's words for a destination config it refuses."""
    def part(name: str, destination: str | None) -> str:
        return f"On{name}(destination={destination})" if destination else "null"

    return (f"The provided destination config DestinationConfig(onSuccess={part('Success', config.on_success)}, "
            f"onFailure={part('Failure', config.on_failure)}) is invalid.")


def rebase(config: EventInvokeConfig | None, dead_letter: DeadLetterConfig | None,
           base: Path) -> tuple[EventInvokeConfig | None, DeadLetterConfig | None]:
    """The same settings with each relative `file:` destination made absolute from `base` (the
    directory of the file that gave them)."""
    def absolute(destination: str | None) -> str | None:
        if destination is None or not destination.startswith(FILE):
            return destination
        target = parse_target(destination, base=base)
        return f"{FILE}{target.name}" if target and target.name else destination

    if config is not None and config.destination_config is not None:
        destinations = config.destination_config
        config = msgspec.structs.replace(config, destination_config=DestinationConfig(
            on_success=OnDestination(absolute(destinations.on_success.destination)),
            on_failure=OnDestination(absolute(destinations.on_failure.destination))))
    if dead_letter is not None:
        dead_letter = DeadLetterConfig(absolute(dead_letter.target_arn) or "")
    return config, dead_letter
