"""runtime_api/frontdoors/responses.py and cors.py: a function's result as the HTTP response, by the
rules and examples of "Lambda function URLs: Invoking" (response payloads) and the API Gateway
developer guide; what is malformed; the services' own refusals; CORS."""

import base64
import json

import pytest

from runtime_api.frontdoors import cors
from runtime_api.frontdoors.events import HttpRequest
from runtime_api.frontdoors.model import Cors
from runtime_api.frontdoors.responses import (
    HttpResponse, Malformed, PreludeReader, Refusal, Service, refusal, v1_response, v2_response,
)


# -- payload format 2.0: the documented examples -------------------------------------------------

def test_v2_a_string_result_is_json_with_status_200():
    response = v2_response(b'"Hello, world!"')
    assert (response.status, response.headers, response.body) == (200, [("content-type", "application/json")],
                                                                   b'"Hello, world!"')


def test_v2_an_object_without_status_code_is_the_body_as_it_came():
    result = b'{\n  "message": "Hello, world!"\n}'
    response = v2_response(result)
    assert response.status == 200 and response.body == result
    assert response.header("content-type") == "application/json"


def test_v2_a_custom_response_with_cookies():
    result = json.dumps({"statusCode": 201, "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom"},
                         "body": json.dumps({"message": "Hello, world!"}),
                         "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"],
                         "isBase64Encoded": False}).encode()
    response = v2_response(result)
    assert response.status == 201
    assert response.headers == [("Content-Type", "application/json"), ("My-Custom-Header", "Custom"),
                                ("set-cookie", "Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT"),
                                ("set-cookie", "Cookie_2=Value2; Max-Age=78000")]
    assert response.body == b'{"message": "Hello, world!"}'


def test_v2_base64_body_is_decoded():
    result = {"statusCode": 200, "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True}
    assert v2_response(json.dumps(result).encode()).body == b"\x89PNG"


def test_v2_numbers_and_lists_are_bodies_too():
    assert v2_response(b"[1, 2]").body == b"[1, 2]"
    assert v2_response(b"42").status == 200


@pytest.mark.parametrize("result, why", [
    (b"not json", "not JSON"),
    (b'{"statusCode": "200", "body": "x"}', "statusCode"),
    (b'{"statusCode": 200.5}', "statusCode"),
    (b'{"statusCode": true}', "statusCode"),
    (b'{"statusCode": 700}', "statusCode"),
    (b'{"statusCode": 200, "body": {"a": 1}}', "body must be a string"),
    (b'{"statusCode": 200, "body": 5}', "body must be a string"),
    (b'{"statusCode": 200, "headers": ["a"]}', "headers must be an object"),
    (b'{"statusCode": 200, "headers": {"a": {"b": 1}}}', "header a"),
    (b'{"statusCode": 200, "cookies": "a=1"}', "cookies"),
    (b'{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}', "not base64"),
    (b'{"statusCode": 200, "isBase64Encoded": "yes"}', "isBase64Encoded"),
])
def test_v2_malformed_results(result, why):
    with pytest.raises(Malformed, match=why):
        v2_response(result)


# -- payload format 1.0 ----------------------------------------------------------------------------

def test_v1_merges_multi_value_headers_with_headers():
    result = {"statusCode": 200, "headers": {"X-One": "a", "X-Two": "b"},
              "multiValueHeaders": {"X-One": ["a", "c"], "Set-Cookie": ["s=1", "t=2"]}, "body": "ok"}
    response = v1_response(json.dumps(result).encode(), rest=True)
    assert response.headers == [("X-One", "a"), ("X-One", "c"), ("Set-Cookie", "s=1"), ("Set-Cookie", "t=2"),
                                ("X-Two", "b"), ("Content-Type", "application/json")]
    assert response.body == b"ok"


def test_v1_rest_refuses_other_keys_http_ignores_them():
    result = json.dumps({"statusCode": 200, "body": "x", "cookies": ["a=1"]}).encode()
    with pytest.raises(Malformed, match="also has cookies"):
        v1_response(result, rest=True)
    assert v1_response(result, rest=False).body == b"x"


def test_v1_status_code_is_required_by_http_apis_only():
    assert v1_response(b'{"body": "x"}', rest=True).status == 200
    with pytest.raises(Malformed):
        v1_response(b'{"body": "x"}', rest=False)
    with pytest.raises(Malformed):
        v1_response(b'"just a string"', rest=True)


def test_v1_rest_decodes_base64_only_for_a_binary_media_type_the_caller_accepts():
    result = json.dumps({"statusCode": 200, "headers": {"Content-Type": "image/png"},
                         "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True}).encode()
    assert v1_response(result, rest=True, binary_media_types=["image/png"], accept="image/png").body == b"\x89PNG"
    as_text = v1_response(result, rest=True, binary_media_types=["image/png"], accept="application/json")
    assert as_text.body == base64.b64encode(b"\x89PNG")
    assert v1_response(result, rest=False).body == b"\x89PNG"


# -- the services' refusals ------------------------------------------------------------------------

@pytest.mark.parametrize("service, why, status, body", [
    (Service.REST_API, Refusal.MALFORMED, 502, {"message": "Internal server error"}),
    (Service.REST_API, Refusal.FUNCTION_ERROR, 502, {"message": "Internal server error"}),
    (Service.REST_API, Refusal.THROTTLED, 500, {"message": "Internal server error"}),
    (Service.REST_API, Refusal.NO_ROUTE, 403, {"message": "Missing Authentication Token"}),
    (Service.REST_API, Refusal.UNAUTHORIZED, 401, {"message": "Unauthorized"}),
    (Service.REST_API, Refusal.FORBIDDEN, 403, {"Message": "User is not authorized to access this resource with an explicit deny"}),
    (Service.REST_API, Refusal.API_KEY, 403, {"message": "Forbidden"}),
    (Service.HTTP_API, Refusal.NO_ROUTE, 404, {"message": "Not Found"}),
    (Service.HTTP_API, Refusal.WRONG_METHOD, 404, {"message": "Not Found"}),
    (Service.HTTP_API, Refusal.MALFORMED, 500, {"message": "Internal Server Error"}),
    (Service.HTTP_API, Refusal.FORBIDDEN, 403, {"message": "Forbidden"}),
    (Service.HTTP_API, Refusal.TOO_LARGE, 413, {"message": "Request Entity Too Large"}),
    (Service.FUNCTION_URL, Refusal.MALFORMED, 502, {"Message": "Internal Server Error"}),
    (Service.FUNCTION_URL, Refusal.THROTTLED, 429, {"Message": "Rate Exceeded."}),
])
def test_refusals(service, why, status, body):
    response = refusal(service, why)
    assert response.status == status and json.loads(response.body) == body
    assert response.header("content-type") == "application/json"


def test_rest_refusals_name_their_error_type():
    assert refusal(Service.REST_API, Refusal.NO_ROUTE).header("x-amzn-ErrorType") == "MissingAuthenticationTokenException"
    assert refusal(Service.REST_API, Refusal.UNAUTHORIZED).header("x-amzn-ErrorType") == "UnauthorizedException"


# -- a streamed HTTP integration response ----------------------------------------------------------

def test_prelude_reader_takes_the_prelude_in_pieces():
    reader = PreludeReader()
    stream = json.dumps({"statusCode": 418, "headers": {"X-A": "1"}, "cookies": ["c=1"]}).encode() + b"\0" * 8 + b"body"
    assert reader.feed(stream[:5]) == (None, b"")
    head, rest = reader.feed(stream[5:])
    assert head.status == 418 and head.headers == [("X-A", "1"), ("set-cookie", "c=1")] and rest == b"body"


def test_prelude_reader_refuses_a_prelude_that_is_not_json():
    with pytest.raises(Malformed):
        PreludeReader().feed(b"{oops" + b"\0" * 8)


# -- CORS ------------------------------------------------------------------------------------------

def _request(method="GET", headers=()):
    return HttpRequest(method=method, path="/", query="", headers=list(headers))


CONFIG = Cors(allow_origins=["http://app.localhost:8000"], allow_methods=["GET", "POST"], allow_headers=["x-token"],
              expose_headers=["x-total"], max_age=300, allow_credentials=True)


def test_preflight_is_answered_for_an_allowed_origin():
    request = _request("OPTIONS", [("Origin", "http://app.localhost:8000"), ("Access-Control-Request-Method", "POST")])
    assert cors.is_preflight(request)
    response = cors.preflight(CONFIG, request)
    assert response.status == 204
    assert dict(response.headers) == {
        "access-control-allow-origin": "http://app.localhost:8000", "access-control-allow-methods": "GET,POST",
        "access-control-allow-headers": "x-token", "access-control-allow-credentials": "true",
        "access-control-max-age": "300", "vary": "Origin"}


def test_an_origin_not_allowed_gets_no_cors_headers():
    request = _request("OPTIONS", [("Origin", "http://evil.localhost"), ("Access-Control-Request-Method", "GET")])
    assert cors.preflight(CONFIG, request).headers == []
    response = HttpResponse(200, [("Access-Control-Allow-Origin", "*")])
    cors.add_cors(CONFIG, _request(headers=[("Origin", "http://evil.localhost")]), response)
    assert response.headers == []  # the function's own CORS headers are replaced, here by none


def test_actual_request_gets_the_configured_headers():
    response = HttpResponse(200, [("content-type", "text/plain")])
    cors.add_cors(Cors(allow_origins=["*"], expose_headers=["x-total"]), _request(headers=[("Origin", "http://a")]),
                  response)
    assert response.headers == [("content-type", "text/plain"), ("access-control-allow-origin", "*"),
                                ("access-control-expose-headers", "x-total")]


def test_origins_compare_without_case():
    """A browser sends its host in lower case; a template may write it otherwise (`${MyApi}`)."""
    config = Cors(allow_origins=["http://Site.execute-api.us-east-1.localhost:3000"])
    assert cors.allowed_origin(config, "http://site.execute-api.us-east-1.localhost:3000") == \
        "http://site.execute-api.us-east-1.localhost:3000"
