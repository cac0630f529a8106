"""Small pure pieces: route matching, content sniffing, header safety, log-line formats, config."""

from __future__ import annotations

import pytest

from runtime_api import logs, routes
from runtime_api.config import availability_zone_id, function_arn
from runtime_api.http import _field
from runtime_api.sniff import sniff_content_type


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


@pytest.mark.parametrize("body, kind", [
    (b'{"hello": "world"}', "text/plain; charset=utf-8"),  # RIE: JSON is text/plain
    (b"plain text", "text/plain; charset=utf-8"),
    (b"<html><body>hi</body></html>", "text/html; charset=utf-8"),
    (b"  \n<!DOCTYPE html>", "text/html; charset=utf-8"),
    (b"<?xml version='1.0'?>", "text/xml; charset=utf-8"),
    (b"\x00\x00binary", "application/octet-stream"),
    (b"%PDF-1.7", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"", None),
])
def test_content_types_are_sniffed_as_go_does(body, kind):
    assert sniff_content_type(body) == kind


def test_header_values_never_split():
    assert _field("X-Trace", "a\r\nInjected: yes") == (b"X-Trace", b"a  Injected: yes")
    assert _field("X", "café") == (b"X", "café".encode("latin-1"))
    assert _field("X", "日本") == (b"X", "日本".encode())
    with pytest.raises(ValueError):
        _field("Bad Name", "v")


def test_the_tail_keeps_the_last_4_kb():
    tail = logs.TailBuffer()
    for i in range(3000):
        tail.append(f"line {i}\n".encode())
    value = tail.value()
    assert len(value) == 4096 and value.endswith(b"line 2999\n")


@pytest.mark.parametrize("region, zone", [("us-east-1", "use1-az1"), ("eu-west-1", "euw1-az1"),
                                          ("ap-northeast-1", "apne1-az1"), ("eu-central-1", "euc1-az1")])
def test_availability_zone_ids(region, zone):
    assert availability_zone_id(region) == zone


def test_function_arns():
    assert function_arn("f") == "arn:aws:lambda:us-east-1:123456789012:function:f"
