"""runtime_api/frontdoors/router.py: which route a request reaches, as API Gateway chooses it."""

import pytest

from runtime_api.frontdoors.model import Route
from runtime_api.frontdoors.router import NO_ROUTE, WRONG_METHOD, Matched, Router, compile_path

ROUTES = [
    Route(method="GET", path="/pets", function="list"),
    Route(method="GET", path="/pets/{id}", function="get"),
    Route(method="ANY", path="/pets/{id}", function="any-pet"),
    Route(method="GET", path="/pets/dog", function="dog"),
    Route(method="POST", path="/files/{proxy+}", function="files"),
    Route(method="GET", path="/", function="root"),
]


@pytest.mark.parametrize("method, path, function, parameters", [
    ("GET", "/pets", "list", {}),
    ("GET", "/pets/7", "get", {"id": "7"}),
    ("DELETE", "/pets/7", "any-pet", {"id": "7"}),
    ("GET", "/pets/dog", "dog", {}),  # a literal before a parameter
    ("GET", "/pets/a%20b", "get", {"id": "a b"}),  # decoded
    ("POST", "/files/a/b/c.txt", "files", {"proxy": "a/b/c.txt"}),  # greedy takes the rest
    ("GET", "/", "root", {}),
    ("GET", "/pets/", "list", {}),  # a trailing slash
])
def test_matches(method, path, function, parameters):
    found = Router(ROUTES).match(method, path)
    assert isinstance(found, Matched)
    assert (found.route.function, found.path_parameters) == (function, parameters)


def test_misses_tell_a_path_for_another_method_from_no_path():
    router = Router(ROUTES)
    assert router.match("POST", "/pets") is WRONG_METHOD
    assert router.match("GET", "/nothing") is NO_ROUTE
    assert router.match("POST", "/files") is NO_ROUTE  # a greedy parameter takes one segment at least


def test_default_route_takes_what_no_other_does():
    router = Router([*ROUTES, Route(method="ANY", path="$default", function="fallback")])
    assert router.match("POST", "/pets").route.function == "fallback"
    assert router.match("GET", "/anything/at/all").route_key == "$default"
    assert router.match("GET", "/pets/7").route_key == "GET /pets/{id}"


def test_greedy_parameter_must_be_last():
    with pytest.raises(ValueError, match="last segment"):
        compile_path("/{proxy+}/more")
    with pytest.raises(ValueError, match="must start with /"):
        compile_path("pets")
