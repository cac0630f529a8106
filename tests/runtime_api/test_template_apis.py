"""runtime_api/template/apis.py: the front doors a template declares, from SAM (through the real SAM
transform) and from plain CloudFormation as `cdk synth` writes it (Resources and Methods, Routes and
Integrations); what cannot be read is a problem, and the rest is served."""

import textwrap
from pathlib import Path

from template_projects import HANDLER, project

from runtime_api.frontdoors.model import JwtAuthorizer, LambdaAuthorizer
from runtime_api.template import load_template

FUNCTION = """
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      Code: {ZipFile: "def handler(event, context): return 1"}
      Role: arn:aws:iam::123456789012:role/r
"""
URI = "!Sub \"arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations\""


def test_cdk_style_rest_api_of_resources_and_methods(tmp_path):
    template = project(tmp_path, "Resources:" + FUNCTION + textwrap.dedent(f"""
      Api:
        Type: AWS::ApiGateway::RestApi
        Properties: {{Name: shop, BinaryMediaTypes: ["image~1png"]}}
      Items:
        Type: AWS::ApiGateway::Resource
        Properties: {{RestApiId: !Ref Api, ParentId: !GetAtt Api.RootResourceId, PathPart: items}}
      Item:
        Type: AWS::ApiGateway::Resource
        Properties: {{RestApiId: !Ref Api, ParentId: !Ref Items, PathPart: "{{id}}"}}
      Auth:
        Type: AWS::ApiGateway::Authorizer
        Properties: {{RestApiId: !Ref Api, Name: tokens, Type: TOKEN, AuthorizerUri: {URI},
                     IdentitySource: method.request.header.Authorization}}
      GetItem:
        Type: AWS::ApiGateway::Method
        Properties:
          RestApiId: !Ref Api
          ResourceId: !Ref Item
          HttpMethod: GET
          AuthorizationType: CUSTOM
          AuthorizerId: !Ref Auth
          ApiKeyRequired: true
          OperationName: GetItem
          Integration: {{Type: AWS_PROXY, IntegrationHttpMethod: POST, Uri: {URI}}}
      Key:
        Type: AWS::ApiGateway::ApiKey
        Properties: {{Value: local-key-123}}
      Deployment:
        Type: AWS::ApiGateway::Deployment
        Properties: {{RestApiId: !Ref Api}}
      Stage:
        Type: AWS::ApiGateway::Stage
        Properties: {{RestApiId: !Ref Api, DeploymentId: !Ref Deployment, StageName: v1, Variables: {{a: b}}}}
    """).replace("\n", "\n  "))
    (api,) = load_template(template).apis
    assert (api.kind, api.stage, api.stage_variables, api.binary_media_types) == ("REST", "v1", {"a": "b"}, ["image/png"])
    (route,) = api.routes
    assert (route.method, route.path, route.function, route.authorizer) == ("GET", "/items/{id}", "Fn", "tokens")
    assert route.api_key_required and route.operation_name == "GetItem" and api.api_keys == ["local-key-123"]
    (authorizer,) = api.authorizers
    assert isinstance(authorizer, LambdaAuthorizer) and authorizer.type == "TOKEN" and authorizer.function == "Fn"


def test_cdk_style_http_api_of_routes_and_integrations(tmp_path):
    template = project(tmp_path, "Resources:" + FUNCTION + textwrap.dedent(f"""
      Api:
        Type: AWS::ApiGatewayV2::Api
        Properties:
          Name: http
          ProtocolType: HTTP
          CorsConfiguration: {{AllowOrigins: ["http://a.localhost"], MaxAge: 60}}
      Integration:
        Type: AWS::ApiGatewayV2::Integration
        Properties: {{ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn,
                     PayloadFormatVersion: "1.0"}}
      Jwt:
        Type: AWS::ApiGatewayV2::Authorizer
        Properties: {{ApiId: !Ref Api, Name: users, AuthorizerType: JWT, IdentitySource: [$request.header.Authorization],
                     JwtConfiguration: {{Issuer: "https://issuer.localhost", Audience: [app]}}}}
      Route:
        Type: AWS::ApiGatewayV2::Route
        Properties:
          ApiId: !Ref Api
          RouteKey: GET /pets/{{id}}
          AuthorizationType: JWT
          AuthorizerId: !Ref Jwt
          AuthorizationScopes: [read]
          Target: !Join [/, [integrations, !Ref Integration]]
      Stage:
        Type: AWS::ApiGatewayV2::Stage
        Properties: {{ApiId: !Ref Api, StageName: $default, StageVariables: {{x: y}}}}
      Quick:
        Type: AWS::ApiGatewayV2::Api
        Properties: {{Name: quick, ProtocolType: HTTP, Target: !GetAtt Fn.Arn}}
    """).replace("\n", "\n  "))
    api, quick = load_template(template).apis
    (route,) = api.routes
    assert (route.method, route.path, route.function, route.payload_format) == ("GET", "/pets/{id}", "Fn", "1.0")
    assert route.authorizer == "users" and route.authorization_scopes == ["read"]
    assert isinstance(api.authorizers[0], JwtAuthorizer) and api.authorizers[0].audience == ["app"]
    assert api.cors.allow_origins == ["http://a.localhost"] and api.cors.max_age == 60
    assert api.stage_variables == {"x": "y"}
    assert [(r.method, r.path, r.function) for r in quick.routes] == [("ANY", "$default", "Fn")]


def test_function_url_config_of_a_sam_function(tmp_path):
    template = project(tmp_path, """
    Transform: AWS::Serverless-2016-10-31
    Resources:
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          Runtime: python3.12
          Handler: app.handler
          CodeUri: src/
          FunctionName: shop-fn
          FunctionUrlConfig:
            AuthType: AWS_IAM
            InvokeMode: RESPONSE_STREAM
            Cors: {AllowOrigins: ["*"], AllowMethods: [GET], AllowCredentials: false, MaxAge: 10}
    """, {"src/app.py": HANDLER})
    (function,) = load_template(template).functions
    assert (function.url.auth_type, function.url.invoke_mode) == ("AWS_IAM", "RESPONSE_STREAM")
    assert function.url.cors.allow_methods == ["GET"] and function.url.cors.max_age == 10


def test_an_unparseable_openapi_definition_is_a_problem_and_the_rest_is_served(tmp_path):
    template = project(tmp_path, """
    Transform: AWS::Serverless-2016-10-31
    Resources:
      Broken:
        Type: AWS::Serverless::Api
        Properties: {StageName: Prod, DefinitionUri: openapi.yaml}
      NoPaths:
        Type: AWS::Serverless::HttpApi
        Properties:
          DefinitionBody: {openapi: "3.0.1", info: {title: t, version: "1"}, paths: [not, a, mapping]}
      Fn:
        Type: AWS::Serverless::Function
        Properties:
          Runtime: python3.12
          Handler: app.handler
          CodeUri: src/
          Events:
            Ok: {Type: HttpApi, Properties: {Path: /ok, Method: GET}}
    """, {"src/app.py": HANDLER, "openapi.yaml": "openapi: 3.0.1\npaths: {/x: [unclosed\n"})
    stack = load_template(template)
    assert [api.name for api in stack.apis] == ["ServerlessHttpApi"]
    assert [(route.path, route.function) for route in stack.apis[0].routes] == [("/ok", "Fn")]
    messages = [str(problem) for problem in stack.problems]
    assert any("Broken is not served" in m and "OpenAPI definition cannot be read" in m for m in messages), messages
    assert any("NoPaths" in m and "no paths mapping" in m for m in messages), messages
    assert str(Path(tmp_path / "openapi.yaml")) in stack.watched  # fixing it is a change to reload
