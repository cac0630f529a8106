"""runtime_api/frontdoors/events.py: a request as the event a function receives, field by field,
against AWS's documented examples (frontdoor_events/*.json: each example's shape, with this test's
own data), and the rules each format states."""

import base64
import json
from pathlib import Path

import pytest

from runtime_api.frontdoors.events import HttpRequest, Place, v1_event, v2_event

EXAMPLES = Path(__file__).parent / "frontdoor_events"


def _request(spec: dict) -> HttpRequest:
    body = base64.b64decode(spec["body_base64"]) if "body_base64" in spec else spec["body"].encode()
    return HttpRequest(method=spec["method"], path=spec["path"], query=spec["query"],
                       headers=[tuple(pair) for pair in spec["headers"]], body=body, time=spec["time"],
                       request_id=spec["request_id"])


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.glob("*.json")))
def test_documented_examples_field_by_field(name):
    example = json.loads((EXAMPLES / name).read_text())
    request, place = _request(example["request"]), Place(**example["place"])
    if example["event"].get("version") == "2.0":
        event = v2_event(request, place, function_url=example["function_url"])
    else:
        event = v1_event(request, place, rest=example["rest"])
    expected = example["event"]
    assert list(event) == list(expected)  # the same fields (and no more), in AWS's order
    for field in expected:
        assert event[field] == expected[field], field


def _get(path="/", query="", headers=(), body=b"") -> HttpRequest:
    return HttpRequest(method="GET", path=path, query=query, headers=list(headers), body=body, request_id="r")


PLACE = Place(api_id="abc", domain_name="abc.execute-api.us-east-1.localhost")


def test_v2_leaves_out_what_is_not_there_and_function_urls_give_nulls():
    api = v2_event(_get(), PLACE)
    for absent in ("cookies", "queryStringParameters", "body", "pathParameters", "stageVariables"):
        assert absent not in api
    assert "authorizer" not in api["requestContext"] and "authentication" not in api["requestContext"]
    url = v2_event(_get(), PLACE, function_url=True)
    assert url["pathParameters"] is None and url["stageVariables"] is None
    assert url["requestContext"]["authorizer"] is None and url["requestContext"]["authentication"] is None
    assert url["isBase64Encoded"] is False and api["isBase64Encoded"] is False


@pytest.mark.parametrize("content_type, encoded", [
    ("application/json", False), ("text/html; charset=utf-8", False), ("application/vnd.api+json", False),
    ("application/xml", False), ("application/octet-stream", True), ("image/png", True),
    ("application/x-www-form-urlencoded", True), ("", True),
])
def test_v2_body_is_base64_unless_text(content_type, encoded):
    event = v2_event(_get(headers=[("content-type", content_type)] if content_type else [], body=b"a=1"), PLACE)
    assert event["isBase64Encoded"] is encoded
    assert event["body"] == (base64.b64encode(b"a=1").decode() if encoded else "a=1")


def test_v2_text_body_that_is_not_utf8_is_base64():
    event = v2_event(_get(headers=[("content-type", "text/plain")], body=b"\xff\xfe"), PLACE)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe"


def test_v2_query_values_are_decoded_and_empty_ones_kept():
    event = v2_event(_get(query="q=a%20b&empty=&plus=1+2"), PLACE)
    assert event["rawQueryString"] == "q=a%20b&empty=&plus=1+2"
    assert event["queryStringParameters"] == {"q": "a b", "empty": "", "plus": "1 2"}


def test_v1_rest_binary_media_types_decide_base64():
    request = _get(headers=[("Content-Type", "image/png")], body=b"\x89PNG")
    binary = v1_event(request, PLACE, rest=True, binary_media_types=["image/*"])
    assert binary["isBase64Encoded"] is True and binary["body"] == base64.b64encode(b"\x89PNG").decode()
    text = v1_event(_get(headers=[("Content-Type", "image/png")], body=b"abc"), PLACE, rest=True,
                    binary_media_types=["application/pdf"])
    assert text["isBase64Encoded"] is False and text["body"] == "abc"


def test_v1_rest_names_the_operation_and_the_api_key():
    place = Place(api_id="abc", domain_name="d", operation_name="ListPets", api_key="k-123")
    event = v1_event(_get(), place, rest=True)
    assert event["requestContext"]["operationName"] == "ListPets"
    assert event["requestContext"]["identity"]["apiKey"] == "k-123"
    assert "version" not in event  # REST events carry no version field


def test_authorizer_context_goes_in_request_context():
    place = Place(api_id="abc", domain_name="d", authorizer={"lambda": {"user": "ann"}})
    assert v2_event(_get(), place)["requestContext"]["authorizer"] == {"lambda": {"user": "ann"}}
    assert v1_event(_get(), place, rest=False)["requestContext"]["authorizer"] == {"lambda": {"user": "ann"}}
