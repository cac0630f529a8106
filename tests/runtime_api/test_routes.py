"""runtime_api.routes: the Runtime API's paths matched exactly as RIE matches them."""

from __future__ import annotations

import pytest

from runtime_api import routes


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/2018-06-01/runtime/invocation/next", routes.Match(routes.Route.NEXT, None)),
    ("POST", "/2018-06-01/runtime/invocation/abc/response", routes.Match(routes.Route.RESPONSE, "abc")),
    ("POST", "/2018-06-01/runtime/invocation//error", routes.Match(routes.Route.ERROR, "")),
    ("PUT", "/2018-06-01/runtime/invocation/next", routes.MethodNotAllowed("GET")),
    ("HEAD", "/2018-06-01/runtime/invocation/next", routes.MethodNotAllowed("GET")),
    ("GET", "/2018-06-01/runtime/invocation/next/", routes.NOT_FOUND),
    ("GET", "/2018-06-01/Runtime/invocation/next", routes.NOT_FOUND),
    ("GET", "/ping", routes.NOT_FOUND),
    ("GET", "/2018-06-01/runtime/restore/next", routes.NOT_FOUND),  # only under SnapStart
])
def test_routes_match_exactly_as_rie_does(method, path, expected):
    assert routes.match(method, path, restore=False) == expected


def test_restore_routes_exist_under_snapstart():
    assert routes.match("GET", "/2018-06-01/runtime/restore/next", restore=True) == routes.Match(routes.Route.RESTORE_NEXT, None)


def test_the_metadata_endpoint_takes_every_method_to_answer_405_itself():
    found = routes.match("POST", "/2026-01-15/metadata/execution-environment", restore=False)
    assert found == routes.Match(routes.Route.METADATA, None)


def test_the_credentials_route_exists_only_with_init_caching():
    assert routes.match("GET", "/2021-04-23/credentials", restore=False) is routes.NOT_FOUND
    assert routes.match("GET", "/2021-04-23/credentials", restore=False, init_caching=True).route is routes.Route.CREDENTIALS
