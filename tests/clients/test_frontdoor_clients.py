"""Function URLs and API Gateway APIs of a SAM application (frontdoor_app/: a template written for
these tests, read by the real SAM transform), reached by real clients: requests, curl and the AWS
CLI's SigV4 signing. Each event format is checked where it arrives (the functions echo it), each
authorizer allows, denies and passes its context, and bad input gets the service's answer while
the server keeps serving."""

import json
import re
import subprocess
import time
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import CapturedLog
from runtime_api import LambdaletThread, ServerConfig
from runtime_api.frontdoors.model import url_id
from runtime_api.sources import Overrides, TemplateSource

TEMPLATE = Path(__file__).parent / "frontdoor_app" / "template.yaml"
LIMIT = 6 * 1024 * 1024


class App:
    def __init__(self, handle: LambdaletThread, loaded) -> None:
        self.handle, self.loaded, self.base = handle, loaded, handle.front_doors
        self.apis = {api.name: api for api in loaded.apis}
        self.functions = {function.name: function for function in loaded.functions}

    def api_host(self, name: str) -> str:
        return f"{self.apis[name].id}.execute-api.us-east-1.localhost"

    def url_host(self, function: str) -> str:
        config = self.functions[function]
        return f"{url_id(config.lambda_name, config.url)}.lambda-url.us-east-1.localhost"

    def get(self, host: str | None, path: str, method: str = "GET", headers=None, **options) -> requests.Response:
        """A request to the front-door port, by host name (`*.localhost` is loopback, but Python's
        resolver does not know it: the Host header says it)."""
        headers = dict(headers or {})
        if host is not None:
            headers["Host"] = host
        return requests.request(method, self.base + path, headers=headers, timeout=60, **options)


@pytest.fixture(scope="module")
def app():
    loaded = TemplateSource(str(TEMPLATE), overrides=Overrides(runtime={"sdk": "none"})).load()
    config = ServerConfig(port=0, front_door_port=0, function=loaded.functions, api=loaded.apis)
    with LambdaletThread(config, sink=CapturedLog()) as handle:
        yield App(handle, loaded)


# -- Function URLs -------------------------------------------------------------------------------

def test_function_url_event_and_response(app):
    response = app.get(app.url_host("Echo"), "/shop/cart?item=a&item=b", method="POST", data=b'{"n": 1}',
                       headers={"Content-Type": "application/json", "Cookie": "sid=9; theme=dark", "X-Rep": "1"})
    assert response.status_code == 200
    assert response.headers["x-echo"] == "yes" and response.headers["set-cookie"] == "seen=1; Path=/"
    event = response.json()
    assert (event["version"], event["routeKey"], event["rawPath"]) == ("2.0", "$default", "/shop/cart")
    assert event["rawQueryString"] == "item=a&item=b" and event["queryStringParameters"] == {"item": "a,b"}
    assert event["cookies"] == ["sid=9", "theme=dark"] and "cookie" not in event["headers"]
    assert event["headers"]["x-rep"] == "1" and event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"n": 1}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["accountId"] == "anonymous" and context["apiId"] == url_id("Echo", app.functions["Echo"].url)
    assert context["domainName"] == app.url_host("Echo") and context["http"]["method"] == "POST"
    assert context["http"]["sourceIp"] == "127.0.0.1" and context["stage"] == "$default"
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 3600
    assert event["pathParameters"] is None and event["stageVariables"] is None


def test_function_url_binary_body_is_base64(app):
    event = app.get(app.url_host("Echo"), "/", method="PUT", data=b"\x00\x01\xff",
                    headers={"Content-Type": "application/octet-stream"}).json()
    assert event["isBase64Encoded"] is True and event["body"] == "AAH/"


def test_function_url_aws_iam_needs_a_sigv4_header(app):
    host = app.url_host("EchoV1")
    assert app.get(host, "/").status_code == 403
    assert app.get(host, "/", headers={"Authorization": "Bearer not-sigv4"}).status_code == 403
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signed = AWSRequest(method="GET", url=f"http://{host}/", headers={"Host": host})
    SigV4Auth(Credentials("AKIAIOSFODNN7EXAMPLE", "secret"), "lambda", "us-east-1").add_auth(signed)
    response = app.get(host, "/", headers=dict(signed.headers))
    assert response.status_code == 200
    iam = response.json()["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == "AKIAIOSFODNN7EXAMPLE"


def test_curl_reaches_a_function_url_by_its_host_name(app):
    """curl resolves `*.localhost` to loopback itself, as browsers do."""
    port = app.base.rsplit(":", 1)[1]
    out = subprocess.run(["curl", "-sS", "-i", f"http://{app.url_host('Echo')}:{port}/from/curl?x=1"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    head, _, body = out.partition("\n\n")  # text mode: curl's CRLFs read as newlines
    assert head.startswith("HTTP/1.1 200") and json.loads(body)["rawPath"] == "/from/curl"


# -- HTTP APIs ------------------------------------------------------------------------------------

def test_http_api_payload_2_0(app):
    event = app.get(app.api_host("Http"), "/items/42?q=1", headers={"X-A": "1"}).json()
    assert event["routeKey"] == "GET /items/{id}" and event["pathParameters"] == {"id": "42"}
    assert event["stageVariables"] == {"tier": "free"} and event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["apiId"] == app.apis["Http"].id and "authorizer" not in event["requestContext"]


def test_http_api_payload_1_0_with_multi_value_headers_out(app):
    response = app.get(app.api_host("Http"), "/v1/items?a=1&a=2")
    assert response.headers["X-Multi"] == "a, b"  # two header lines, as requests joins them
    event = response.json()
    assert event["version"] == "1.0" and event["resource"] == "/v1/items"
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]} and event["queryStringParameters"] == {"a": "2"}
    assert all(name == name.lower() for name in event["headers"])  # HTTP APIs lower-case header names


def test_http_api_plain_return_through_default_route(app):
    response = app.get(app.api_host("ServerlessHttpApi"), "/any/where", method="DELETE")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "hello", "path": "/any/where"}


def test_plain_address_serves_the_apis_without_their_stage(app):
    assert app.get(None, "/items/7").json()["pathParameters"] == {"id": "7"}
    assert app.get(None, "/png", headers={"Accept": "image/png"}).content == b"\x89PNG\r\n\x1a\n"


def test_http_api_no_route_and_wrong_method(app):
    host = app.api_host("Http")
    assert (app.get(host, "/nothing").status_code, app.get(host, "/nothing").json()) == (404, {"message": "Not Found"})
    wrong = app.get(host, "/items/1", method="POST")
    assert (wrong.status_code, wrong.json()) == (404, {"message": "Not Found"})


def test_http_api_cors(app):
    host = app.api_host("Http")
    preflight = app.get(host, "/items/1", method="OPTIONS", headers={
        "Origin": "http://app.localhost:8000", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-token"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://app.localhost:8000"
    assert preflight.headers["access-control-allow-headers"] == "x-token"
    actual = app.get(host, "/items/1", headers={"Origin": "http://app.localhost:8000"})
    assert actual.headers["access-control-allow-origin"] == "http://app.localhost:8000"
    other = app.get(host, "/items/1", headers={"Origin": "http://elsewhere.localhost"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("path, token, status, authorizer", [
    ("/simple", "allow", 200, {"lambda": {"user": "bob", "roles": ["x"]}}),
    ("/simple", "deny", 403, None),
    ("/simple", None, 401, None),
    ("/policy", "allow", 200, {"lambda": {"user": "ann", "level": 3}, "principalId": "user-ann"}),
    ("/policy", "deny", 403, None),
    ("/policy", "unauthorized", 401, None),
])
def test_http_api_lambda_authorizers(app, path, token, status, authorizer):
    response = app.get(app.api_host("Http"), path, headers={"X-Token": token} if token else {})
    assert response.status_code == status
    if authorizer is not None:
        assert response.json()["requestContext"]["authorizer"] == authorizer
    else:
        assert response.json() == {"message": {401: "Unauthorized", 403: "Forbidden"}[status]}


def test_http_api_jwt_authorizer(app):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(**claims):
        base = {"iss": "https://issuer.localhost", "aud": "my-app", "sub": "ann", "scope": "read",
                "exp": int(time.time()) + 600, **claims}
        return "Bearer " + jwt.encode(base, key, algorithm="RS256")

    host = app.api_host("Http")
    allowed = app.get(host, "/jwt", headers={"Authorization": token()})
    assert allowed.status_code == 200
    assert allowed.json()["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "ann"
    assert app.get(host, "/jwt", headers={"Authorization": token(scope="write")}).status_code == 403
    assert app.get(host, "/jwt", headers={"Authorization": token(iss="https://evil")}).status_code == 401
    assert app.get(host, "/jwt").status_code == 401


# -- REST APIs ------------------------------------------------------------------------------------

def test_rest_api_event(app):
    response = app.get(app.api_host("Rest"), "/Prod/items/9?x=1&x=2", headers={"X-Mixed-Case": "v"})
    assert response.headers["X-Multi"] == "a, b"
    event = response.json()
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/items/{id}", "/items/9", "GET")
    assert event["headers"]["X-Mixed-Case"] == "v"  # REST APIs keep header names as sent
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["pathParameters"] == {"id": "9"} and event["stageVariables"] == {"color": "blue"}
    context = event["requestContext"]
    assert (context["stage"], context["path"], context["resourcePath"]) == ("Prod", "/Prod/items/9", "/items/{id}")
    assert "version" not in event and event["body"] is None


def test_rest_api_greedy_path_and_stage_prefix(app):
    host = app.api_host("Rest")
    event = app.get(host, "/Prod/files/a/b/c.txt", method="PATCH").json()
    assert event["pathParameters"] == {"proxy": "a/b/c.txt"} and event["resource"] == "/files/{proxy+}"
    missing_stage = app.get(host, "/items/9")
    assert (missing_stage.status_code, missing_stage.json()) == (403, {"message": "Missing Authentication Token"})


def test_rest_api_binary_media_types(app):
    host = app.api_host("Rest")
    assert app.get(host, "/Prod/png", headers={"Accept": "image/png"}).content == b"\x89PNG\r\n\x1a\n"
    assert app.get(host, "/Prod/png", headers={"Accept": "application/json"}).text == "iVBORw0KGgo="
    event = app.get(host, "/Prod/items/1", method="GET", data=b"\x89PNG", headers={"Content-Type": "image/png"}).json()
    assert event["isBase64Encoded"] is True


@pytest.mark.parametrize("path, token, status", [
    ("/Prod/token", "allow", 200), ("/Prod/token", "deny", 403), ("/Prod/token", "unauthorized", 401),
    ("/Prod/token", None, 401),
    ("/Prod/request", "allow", 200), ("/Prod/request", "deny", 403), ("/Prod/request", None, 401),
])
def test_rest_api_token_and_request_authorizers(app, path, token, status):
    response = app.get(app.api_host("Rest"), path, headers={"X-Token": token} if token else {})
    assert response.status_code == status
    if status == 200:
        authorizer = response.json()["requestContext"]["authorizer"]
        assert authorizer["principalId"] == "user-ann" and authorizer["user"] == "ann" and authorizer["level"] == "3"
    elif status == 403:
        assert response.json() == {"Message": "User is not authorized to access this resource with an explicit deny"}
    else:
        assert response.json() == {"message": "Unauthorized"}


def test_rest_api_key_required(app):
    host = app.api_host("Rest")
    assert app.get(host, "/Prod/keyed").json() == {"message": "Forbidden"}
    keyed = app.get(host, "/Prod/keyed", headers={"x-api-key": "local-key"})
    assert keyed.status_code == 200 and keyed.json()["requestContext"]["identity"]["apiKey"] == "local-key"


# -- bad input: the service's answer, and the server keeps serving ----------------------------------

@pytest.mark.parametrize("mode", ["notjson", "status", "body", "raise"])
def test_malformed_results_and_failures(app, mode):
    http = app.get(app.api_host("Http"), f"/bad?mode={mode}")
    assert (http.status_code, http.json()) == (500, {"message": "Internal Server Error"})
    rest = app.get(app.api_host("Rest"), f"/Prod/bad?mode={mode}")
    assert (rest.status_code, rest.json()) == (502, {"message": "Internal server error"})
    url = app.get(app.url_host("Bad"), f"/?mode={mode}")
    assert url.status_code == 502
    assert app.get(app.api_host("Http"), "/bad").text == "fine"  # still serving


def test_request_over_the_size_limit(app):
    body = b"x" * (LIMIT + 1)
    for host, path, status in ((app.api_host("Http"), "/items/1", 413), (app.api_host("Rest"), "/Prod/items/1", 413),
                               (app.url_host("Echo"), "/", 413)):
        response = app.get(host, path, method="POST" if host == app.url_host("Echo") else "GET", data=body,
                           headers={"Content-Type": "text/plain"})
        assert response.status_code == status
    assert app.get(app.api_host("Http"), "/items/1").status_code == 200


def test_rest_wrong_method(app):
    response = app.get(app.api_host("Rest"), "/Prod/items/1", method="POST")
    assert (response.status_code, response.json()) == (403, {"message": "Missing Authentication Token"})
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_lambdalet_serve_prints_every_route_and_serves_it(tmp_path):
    """`lambdalet serve --template` as a user runs it: the table of front doors, then requests."""
    from helpers import lambdalet_serve

    with lambdalet_serve("--template", str(TEMPLATE), "--api-port", "0", "--sdk", "none",
                         log_dir=tmp_path) as serve:
        serve.wait_announced()
        base = serve.wait_line(r"lambdalet: front doors on (http://\S+) ")[1]
        serve.wait_line(r"HTTP API ServerlessHttpApi")
        table = serve.stderr
        # Each door's host name begins with its name (an API's logical id, as `!Ref` gives it).
        assert re.search(r"Function URL http://echo\.lambda-url\.us-east-1\.localhost:\d+/ -> Echo \(NONE, BUFFERED\)",
                         table)
        assert re.search(r"REST API Rest: http://rest\.execute-api\.us-east-1\.localhost:\d+/Prod", table)
        assert re.search(r"GET +/token +-> EchoV1 \[TokenAuth\]", table)
        assert re.search(r"GET +/keyed +-> EchoV1 \[API key\]", table)
        assert re.search(r"\$default +-> Hello", table)
        response = requests.get(f"{base}/items/5", timeout=60)
        assert response.json()["pathParameters"] == {"id": "5"}
