"""The Lambda API's event invoke config operations, as boto3 and the AWS CLI call them (botocore's
service model for lambda 2015-03-31):

    PUT    /2019-09-25/functions/{FunctionName}/event-invoke-config[?Qualifier=]   Put    (200)
    POST   /2019-09-25/functions/{FunctionName}/event-invoke-config[?Qualifier=]   Update (200)
    GET    /2019-09-25/functions/{FunctionName}/event-invoke-config[?Qualifier=]   Get    (200)
    DELETE /2019-09-25/functions/{FunctionName}/event-invoke-config[?Qualifier=]   Delete (204)
    GET    /2019-09-25/functions/{FunctionName}/event-invoke-config/list[?Marker=&MaxItems=]  List (200)

Put replaces the config (a setting left out is removed); Update changes only what it gives and
needs a config to change. The config lives in the store, so every host sharing it applies it. Errors
carry Lambda's types and words: ValidationException for a value out of Lambda's ranges,
InvalidParameterValueException for a destination it cannot use, ResourceNotFoundException for a
function or config that is not there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, unquote

import msgspec

from ..invoke_api import ServiceError, parse_function_ref
from ..store import now
from . import invoke_config
from .destinations import destination_problem
from .invoke_config import EventInvokeConfig, FunctionEventInvokeConfig
from .queue import LATEST, EventQueue

PATH = re.compile(r"/2019-09-25/functions/(?P<name>[^/]+)/event-invoke-config(?P<list>/list)?\Z")
MAX_ITEMS = 50
_METHODS = {"PUT": "put", "POST": "update", "GET": "get", "DELETE": "delete"}


class Function(msgspec.Struct, frozen=True):
    """What the operations need of a function served here."""

    name: str  # the name it is served (and its config stored) by
    arn: str  # unqualified
    versions: tuple[str, ...] = (LATEST,)


class EventInvokeConfigApi:
    def __init__(self, queue: EventQueue, function: Callable[[str], Function | None], endpoints: dict[str, str]) -> None:
        self.queue = queue
        self.function = function  # by any name it answers to
        self.endpoints = endpoints

    async def handle(self, method: str, path: re.Match, query: str, body: bytes) -> tuple[int, bytes]:
        """(status, JSON body) for one request; ServiceError for Lambda's errors."""
        found = parse_function_ref(unquote(path["name"]), parse_qs(query).get("Qualifier", [None])[0])
        if path["list"]:
            if method != "GET":
                raise ServiceError(405, "UnknownOperationException", f"Unknown operation {method} {path.string}")
            return 200, await self.list(found.name, query)
        operation = _METHODS.get(method)
        if operation is None:
            raise ServiceError(405, "UnknownOperationException", f"Unknown operation {method} {path.string}")
        function = self.function(found.name)
        qualifier = found.qualifier or LATEST
        arn = f"{function.arn if function else self._arn(found)}:{qualifier}"
        if operation in ("put", "update"):
            given = invoke_config.decode(body)
            invoke_config.check_ranges(given)
            if invoke_config.is_empty(given):
                raise ServiceError(400, "InvalidParameterValueException",
                                   "You must specify at least one of error handling or destination setting.")
        if function is None or qualifier not in function.versions:
            if operation in ("put", "update"):
                raise ServiceError(404, "ResourceNotFoundException", "The function doesn't exist.")
            raise ServiceError(404, "ResourceNotFoundException", f"The function {arn} doesn't have an EventInvokeConfig")
        store = self.queue.store
        existing = await store.get_config(function.name, qualifier)
        if operation == "get":
            if existing is None:
                raise ServiceError(404, "ResourceNotFoundException", f"The function {arn} doesn't have an EventInvokeConfig")
            return 200, _answer(arn, msgspec.json.decode(existing[0], type=EventInvokeConfig), existing[1])
        if operation == "delete":
            if not await store.delete_config(function.name, qualifier):
                raise ServiceError(404, "ResourceNotFoundException", f"The function {arn} doesn't have an EventInvokeConfig")
            return 204, b""
        if operation == "update":
            if existing is None:
                raise ServiceError(404, "ResourceNotFoundException", f"The function {arn} doesn't have an EventInvokeConfig")
            given = invoke_config.merge(msgspec.json.decode(existing[0], type=EventInvokeConfig), given)
        problem = destination_problem(given, function.name, self._served_name, self.endpoints)
        if problem is not None:
            raise ServiceError(400, *problem)
        moment = now()
        await store.put_config(function.name, qualifier, msgspec.json.encode(given), moment)
        return 200, _answer(arn, given, moment)

    async def list(self, name: str, query: str) -> bytes:
        function = self.function(name)
        if function is None:
            raise ServiceError(404, "ResourceNotFoundException", "The function doesn't exist.")
        params = parse_qs(query)
        try:
            start = int(params.get("Marker", ["0"])[0])
            size = int(params.get("MaxItems", [str(MAX_ITEMS)])[0])
        except ValueError:
            raise ServiceError(400, "InvalidParameterValueException", "Invalid Marker or MaxItems") from None
        if not 1 <= size <= MAX_ITEMS:
            raise ServiceError(400, "ValidationException", f"1 validation error detected: Value '{size}' at "
                               f"'maxItems' failed to satisfy constraint: Member must have value "
                               f"{'greater than or equal to 1' if size < 1 else f'less than or equal to {MAX_ITEMS}'}")
        configs = await self.queue.store.list_configs(function.name)
        page = configs[start:start + size]
        listed = [_config(f"{function.arn}:{qualifier}", msgspec.json.decode(config, type=EventInvokeConfig), modified)
                  for qualifier, config, modified in page]
        answer: dict = {"FunctionEventInvokeConfigs": listed}
        if start + size < len(configs):
            answer["NextMarker"] = str(start + size)
        return msgspec.json.encode(answer)

    def _served_name(self, name: str) -> str | None:
        function = self.function(name)
        return function.name if function else None

    @staticmethod
    def _arn(found) -> str:
        return f"arn:aws:lambda:{found.region or 'us-east-1'}:{found.account or '123456789012'}:function:{found.name}"


def _config(arn: str, config: EventInvokeConfig, modified: float) -> FunctionEventInvokeConfig:
    shown = invoke_config.with_defaults_shown(config)
    return FunctionEventInvokeConfig(function_arn=arn, last_modified=modified,
                                     destination_config=shown.destination_config,
                                     maximum_retry_attempts=config.maximum_retry_attempts,
                                     maximum_event_age_in_seconds=config.maximum_event_age_in_seconds)


def _answer(arn: str, config: EventInvokeConfig, modified: float) -> bytes:
    return msgspec.json.encode(_config(arn, config, modified))
