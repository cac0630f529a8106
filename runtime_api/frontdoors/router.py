"""Which route of an API a request reaches, as API Gateway chooses it (pure).

A route's path is a template: literal segments, `{name}` for one segment, and a greedy `{name+}` as
its last segment for one or more. Of the routes whose path and method fit the request, the one
with the most specific path wins (segment by segment, a literal before a `{name}` before a greedy
one), and a route for the method itself before an `ANY` route for the same path. An HTTP API's
`$default` route takes what no other route does. What none takes is told apart: its path exists for
another method (`WrongMethod`) or nothing has it (`NoRoute`); each API kind answers those its way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from .model import Route  # model.py checks its paths with compile_path, so not imported at run time

DEFAULT = "$default"
ANY = "ANY"


class Miss(enum.Enum):
    NO_ROUTE = "no route has this path"
    WRONG_METHOD = "the path has routes, none for this method"


NO_ROUTE, WRONG_METHOD = Miss


@dataclass(frozen=True, slots=True)
class Matched:
    route: Route
    path_parameters: dict[str, str]  # decoded values; a greedy parameter keeps its slashes

    @property
    def route_key(self) -> str:
        """An HTTP API's routeKey: `GET /items/{id}`, or `$default`."""
        route = self.route
        return DEFAULT if route.path == DEFAULT else f"{route.method} {route.path}"


_LITERAL, _PARAMETER, _GREEDY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Template:
    route: Route
    segments: tuple[tuple[int, str], ...]  # (kind, literal text or parameter name)

    @property
    def rank(self) -> tuple:
        """Smaller is more specific: segment kinds in order, then a longer path, then not ANY."""
        return (tuple(kind for kind, _ in self.segments), -len(self.segments), self.route.method == ANY)


def _segments(path: str) -> list[str]:
    return [segment for segment in path.strip("/").split("/")] if path.strip("/") else []


def compile_path(path: str) -> tuple[tuple[int, str], ...]:
    """A route's path as segments; ValueError for a template API Gateway would refuse."""
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with /")
    out = []
    parts = _segments(path)
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name.endswith("+"):
                if index != len(parts) - 1:
                    raise ValueError(f"route path {path!r}: a greedy parameter {part} must be the last segment")
                out.append((_GREEDY, name[:-1]))
            else:
                out.append((_PARAMETER, name))
        else:
            out.append((_LITERAL, part))
    return tuple(out)


class Router:
    """The routes of one API, ready to match."""

    def __init__(self, routes: list[Route]) -> None:
        self.default: Route | None = None
        templates = []
        for route in routes:
            if route.path == DEFAULT:
                self.default = route
            else:
                templates.append(_Template(route, compile_path(route.path)))
        self._templates = sorted(templates, key=lambda template: template.rank)

    def match(self, method: str, path: str) -> Matched | Miss:
        parts = [unquote(part) for part in _segments(path)]
        path_found = False
        for template in self._templates:  # most specific first
            parameters = _fit(template.segments, parts)
            if parameters is None:
                continue
            path_found = True
            if template.route.method in (method, ANY):
                return Matched(template.route, parameters)
        if self.default is not None:
            return Matched(self.default, {})
        return WRONG_METHOD if path_found else NO_ROUTE


def _fit(segments: tuple[tuple[int, str], ...], parts: list[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, (kind, text) in enumerate(segments):
        if kind == _GREEDY:
            if index >= len(parts):
                return None  # a greedy parameter takes one segment at least
            parameters[text] = "/".join(parts[index:])
            return parameters
        if index >= len(parts):
            return None
        if kind == _LITERAL and parts[index] != text:
            return None
        if kind == _PARAMETER:
            if not parts[index]:
                return None
            parameters[text] = parts[index]
    return parameters if len(parts) == len(segments) else None
