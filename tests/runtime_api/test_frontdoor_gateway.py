"""runtime_api/frontdoors/gateway.py, in process: a Function URL in RESPONSE_STREAM mode delivers its
first bytes before the handler finishes; a busy function is throttled as each door answers it; a
door on a port of its own; the front doors swapped by Server.apply; APIs from the TOML config."""

import json

import trio

from helpers import CapturedLog, Gate, HttpClient, write_function
from runtime_api import FunctionConfig, Server, ServerConfig
from runtime_api.config import load_config
from runtime_api.frontdoors.model import Api, FunctionUrl, Route, url_id

HANDLERS = Gate.handler_snippet + '''
from bootstrap.streaming import StreamingResponse


def stream(event, context):
    def body():
        yield "first\\n"
        wait_at_gate(context)
        yield "second\\n"
    return StreamingResponse(body(), status_code=201, headers={"x-kind": "stream"}, cookies=["c=1"])


def raw_stream(event, context):
    def body():
        yield b"raw bytes"
    return body()


def held(event, context):
    wait_at_gate(context)
    return {"statusCode": 200, "body": "done"}
'''


def _url_host(name: str, url: FunctionUrl) -> str:
    return f"{url_id(name, url)}.lambda-url.us-east-1.localhost"


async def _send(port: int, host: str, target: str = "/", headers=()) -> HttpClient:
    client = HttpClient(await trio.open_tcp_stream("127.0.0.1", port))
    h11 = client.h11
    await client.stream.send_all(client.conn.send(h11.Request(method="GET", target=target,
                                                              headers=[("Host", host), *headers])))
    await client.stream.send_all(client.conn.send(h11.EndOfMessage()))
    return client


def _functions(tmp_path, gate, **urls) -> list[FunctionConfig]:
    code = write_function(tmp_path / "fn", HANDLERS)
    env = {"GATE_PORT": str(gate.port)}
    return [FunctionConfig(name=name, code=str(code), handler=f"app.{handler}", env=env, url=url, concurrency=1,
                           isolation="none")
            for name, (handler, url) in urls.items()]


async def test_response_stream_first_bytes_before_the_handler_finishes(tmp_path, gate):
    url = FunctionUrl(invoke_mode="RESPONSE_STREAM")
    functions = _functions(tmp_path, gate, streamer=("stream", url))
    async with Server(ServerConfig(port=0, front_door_port=0, function=functions), sink=CapturedLog()) as server:
        client = await _send(server.gateway.port, _url_host("streamer", url))
        head = await client.next_event()
        assert head.status_code == 201  # the prelude's status, headers and cookies
        headers = {k.decode(): v.decode() for k, v in head.headers}
        assert headers["x-kind"] == "stream" and headers["set-cookie"] == "c=1"
        first = await client.next_event()
        assert first.data == b"first\n"
        (arrival,) = await gate.wait_arrivals(1)  # the handler is still held at the gate
        await gate.release_all()
        rest = b""
        while type(event := await client.next_event()) is not client.h11.EndOfMessage:
            rest += event.data
        assert rest == b"second\n"
        await client.aclose()


async def test_a_stream_without_a_prelude_is_sent_as_it_is(tmp_path, gate):
    url = FunctionUrl(invoke_mode="RESPONSE_STREAM")
    functions = _functions(tmp_path, gate, raw=("raw_stream", url))
    async with Server(ServerConfig(port=0, front_door_port=0, function=functions), sink=CapturedLog()) as server:
        client = await _send(server.gateway.port, _url_host("raw", url))
        status, headers, body, _ = await client.response()
        assert (status, headers["content-type"], body) == (200, "application/octet-stream", b"raw bytes")
        await client.aclose()


async def test_a_busy_function_is_throttled_as_each_door_answers(tmp_path, gate):
    url = FunctionUrl()
    functions = _functions(tmp_path, gate, busy=("held", url))
    api = Api(name="Busy", routes=[Route(method="GET", path="/busy", function="busy")])
    config = ServerConfig(port=0, front_door_port=0, function=functions, api=[api])
    async with Server(config, sink=CapturedLog()) as server:
        port = server.gateway.port
        first = await _send(port, _url_host("busy", url))
        await gate.wait_arrivals(1)  # its one environment is busy
        throttled_url = await _send(port, _url_host("busy", url))
        status, _, body, _ = await throttled_url.response()
        assert (status, json.loads(body)) == (429, {"Message": "Rate Exceeded."})
        throttled_api = await _send(port, f"{api.id}.execute-api.us-east-1.localhost", "/busy")
        status, _, body, _ = await throttled_api.response()
        assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})
        await gate.release_all()
        status, _, body, _ = await first.response()
        assert (status, body) == (200, b"done")
        for client in (first, throttled_url, throttled_api):
            await client.aclose()


async def test_a_door_on_a_port_of_its_own_and_apply_swaps_the_doors(tmp_path, gate):
    from benchmarks.common import free_port

    own = free_port()
    code = write_function(tmp_path / "fn", "def handler(event, context):\n    return {'path': event['rawPath']}\n")
    function = FunctionConfig(name="fn", code=str(code), handler="app.handler", isolation="none")
    api = Api(name="Own", routes=[Route(method="GET", path="/a", function="fn")], port=own)
    async with Server(ServerConfig(port=0, front_door_port=0, function=[function], api=[api]),
                      sink=CapturedLog()) as server:
        client = await _send(own, "anything.localhost", "/a")  # its own port: any host name
        status, _, body, _ = await client.response()
        assert (status, json.loads(body)) == (200, {"path": "/a"})
        await client.aclose()
        moved = Api(name="Own", routes=[Route(method="GET", path="/b", function="fn")], port=own)
        await server.apply([function], apis=[moved])
        client = await _send(own, "anything.localhost", "/a")
        status, _, _, _ = await client.response()
        assert status == 404
        await client.aclose()
        client = await _send(own, "anything.localhost", "/b")
        assert (await client.response())[0] == 200
        await client.aclose()


def test_config_file_declares_urls_and_apis(tmp_path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "lambdalet.toml").write_text('''
front_door_port = 3001

[[function]]
name = "hello"
code = "fn"
url = { auth_type = "AWS_IAM", invoke_mode = "RESPONSE_STREAM", cors = { allow_origins = ["*"], max_age = 60 } }

[[api]]
name = "shop"
kind = "REST"
stage = "dev"
stage_variables = { table = "orders" }
routes = [
  { method = "GET", path = "/items/{id}", function = "hello", authorizer = "tokens" },
  { method = "ANY", path = "/{proxy+}", function = "hello", api_key_required = true },
]
authorizers = [
  { kind = "lambda", name = "tokens", function = "hello", type = "TOKEN", identity_sources = ["method.request.header.Authorization"] },
  { kind = "jwt", name = "users", issuer = "https://issuer.localhost", audience = ["app"], jwks = "keys.json" },
]
''')
    config = load_config(tmp_path / "lambdalet.toml")
    assert config.front_door_port == 3001
    url = config.function[0].url
    assert (url.auth_type, url.invoke_mode, url.cors.allow_origins, url.cors.max_age) == \
        ("AWS_IAM", "RESPONSE_STREAM", ["*"], 60)
    (api,) = config.api
    assert (api.kind, api.stage, api.stage_variables) == ("REST", "dev", {"table": "orders"})
    assert [route.path for route in api.routes] == ["/items/{id}", "/{proxy+}"]
    assert api.authorizer("tokens").type == "TOKEN" and api.authorizer("users").jwks == str(tmp_path / "keys.json")


async def test_a_saved_template_change_reroutes_its_api(tmp_path):
    from template_projects import project

    from runtime_api.reload import Reloader
    from runtime_api.sources import Overrides, TemplateSource

    def template(path: str) -> str:
        return f"""
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Fn:
            Type: AWS::Serverless::Function
            Properties:
              Runtime: python3.11
              Handler: app.handler
              CodeUri: src/
              Events:
                Get: {{Type: HttpApi, Properties: {{Path: {path}, Method: GET}}}}
        """

    path = project(tmp_path, template("/before"), {"src/app.py": "def handler(event, context):\n    return 'hi'\n"})
    source = TemplateSource(str(path), overrides=Overrides(runtime={"sdk": "none"}))
    loaded = source.load()
    config = ServerConfig(port=0, front_door_port=0, function=loaded.functions, api=loaded.apis)
    async with Server(config, sink=CapturedLog()) as server, trio.open_nursery() as nursery:
        reloader = await nursery.start(Reloader(server, source, loaded, name=path.name).run)

        async def status(target: str) -> int:
            client = await _send(server.gateway.port, "serverlesshttpapi.execute-api.us-east-1.localhost", target)
            found = (await client.response())[0]
            await client.aclose()
            return found

        assert (await status("/before"), await status("/after")) == (200, 404)
        project(tmp_path, template("/after"))
        assert (await reloader.wait_reload(1)).error is None
        assert (await status("/before"), await status("/after")) == (404, 200)
        nursery.cancel_scope.cancel()


def test_config_file_routes_api_gateway_would_refuse(tmp_path):
    import pytest

    from runtime_api.config import ConfigError

    for routes, why in (('[{ method = "GET", path = "/{proxy+}/x", function = "f" }]', "last segment"),
                        ('[{ method = "FETCH", path = "/x", function = "f" }]', "not an HTTP method"),
                        ('[{ method = "GET", path = "/x" }]', "reaches no function")):
        (tmp_path / "lambdalet.toml").write_text(f'[[api]]\nname = "a"\nroutes = {routes}\n')
        with pytest.raises(ConfigError, match=why):
            load_config(tmp_path / "lambdalet.toml")


async def test_rest_route_with_aws_iam_authorization(tmp_path):
    code = write_function(tmp_path / "fn", "def handler(event, context):\n    return {'statusCode': 200, 'body': 'in'}\n")
    function = FunctionConfig(name="fn", code=str(code), handler="app.handler", isolation="none")
    api = Api(name="iam", kind="REST", stage="Prod",
              routes=[Route(method="GET", path="/private", function="fn", authorizer="AWS_IAM")])
    signed = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/execute-api/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=" + "0f" * 32)
    async with Server(ServerConfig(port=0, front_door_port=0, function=[function], api=[api]),
                      sink=CapturedLog()) as server:
        host = "iam.execute-api.us-east-1.localhost"
        for headers, status, body in (([], 403, b'{"message":"Missing Authentication Token"}'),
                                      ([("Authorization", signed), ("X-Amz-Date", "20240101T000000Z")], 200, b"in")):
            client = await _send(server.gateway.port, host, "/Prod/private", headers)
            assert (await client.response())[::2] == (status, body)
            await client.aclose()
