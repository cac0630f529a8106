"""Which front door a request is for (pure): by the listener it came to, by its Host name, or, on the
front-door port's plain address, by the routes of every API, as `sam local start-api` serves them.

Host names are the services' own with `localhost` for their domain (`*.localhost` is loopback to
browsers and curl): `<url-id>.lambda-url.<region>.localhost` for a Function URL,
`<api-id>.execute-api.<region>.localhost` for an API, whose path starts with the stage unless the
stage is `$default` (as on AWS). On the plain address (127.0.0.1:PORT, localhost:PORT) paths carry
no stage, and the first API with a route for the request takes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import FunctionConfig
from .model import Api, FunctionUrl, url_id
from .router import NO_ROUTE, WRONG_METHOD, Matched, Miss, Router


@dataclass(frozen=True, slots=True)
class UrlDoor:
    function: FunctionConfig
    url: FunctionUrl
    url_id: str

    @property
    def host(self) -> str:
        return f"{self.url_id}.lambda-url.{self.function.region}.localhost"


@dataclass(frozen=True, slots=True)
class ApiDoor:
    api: Api
    router: Router
    region: str
    account_id: str

    @property
    def host(self) -> str:
        return f"{self.api.id}.execute-api.{self.region}.localhost"

    @property
    def staged(self) -> bool:
        """Its paths start with the stage (on its own host name)."""
        return self.api.stage != "$default"


@dataclass(frozen=True, slots=True)
class Found:
    """An API route a request reaches (or why none), and the path within the API's stage."""

    door: ApiDoor
    match: Matched | Miss
    path: str


Door = UrlDoor | ApiDoor


class Directory:
    """The front doors being served: Function URLs by host name, APIs by host name and routes."""

    def __init__(self, functions: list[FunctionConfig], apis: list[Api]) -> None:
        region = functions[0].region if functions else "us-east-1"
        account = functions[0].account_id if functions else "123456789012"
        self.urls = [UrlDoor(function, function.url, url_id(function.lambda_name, function.url))
                     for function in functions if function.url is not None]
        self.apis = [ApiDoor(api, Router(api.routes), region, account) for api in apis]
        self._by_host: dict[str, Door] = {door.host: door for door in (*self.urls, *self.apis)}
        self.by_port: dict[int, Door] = {
            port: door for door in (*self.urls, *self.apis)
            if (port := door.url.port if isinstance(door, UrlDoor) else door.api.port) is not None}

    @property
    def empty(self) -> bool:
        return not self.urls and not self.apis

    def by_host(self, host: str | None) -> Door | None:
        return self._by_host.get((host or "").rsplit(":", 1)[0].lower()) if host else None

    def route(self, door: ApiDoor, method: str, path: str, *, own_address: bool) -> Found:
        """The route of `door` for a request that reached it at its own host name or port
        (`own_address`: the path starts with a named stage)."""
        if own_address and door.staged:
            prefix = f"/{door.api.stage}"
            if path != prefix and not path.startswith(prefix + "/"):
                return Found(door, NO_ROUTE, path)
            path = path[len(prefix):] or "/"
        return Found(door, door.router.match(method, path), path)

    def route_any(self, method: str, path: str) -> Found | None:
        """On the plain address: the first API with a route for the request, else the first miss
        (a path that exists for another method before one that does not exist)."""
        misses = []
        for door in self.apis:
            found = door.router.match(method, path)
            if isinstance(found, Matched):
                return Found(door, found, path)
            misses.append(Found(door, found, path))
        return next((miss for miss in misses if miss.match is WRONG_METHOD), misses[0] if misses else None)
