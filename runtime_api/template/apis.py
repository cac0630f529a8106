"""The front doors a template declares, as runtime_api/frontdoors/model.py describes them: each
`AWS::Lambda::Url` (a SAM function's `FunctionUrlConfig` is one after the transform), each REST API
(`AWS::ApiGateway::RestApi`: SAM's `Api` events and `AWS::Serverless::Api` become one whose `Body`
is an OpenAPI definition; `cdk synth` writes `AWS::ApiGateway::Resource` and `Method`s) and each HTTP
API (`AWS::ApiGatewayV2::Api`: a `Body`, a quick-create `Target`, or `Route`s and `Integration`s),
with their stages, stage variables, authorizers, CORS, binary media types and API keys.

An OpenAPI definition is read as API Gateway imports it: `paths` with their methods
(`x-amazon-apigateway-any-method` is ANY; `$default` an HTTP API's catch-all), each method's
`x-amazon-apigateway-integration` (an `aws_proxy` one reaches a function through its `uri`; a `mock`
one answers its `responses.default`), `security` (an authorizer, `api_key`) and
`x-amazon-apigateway-auth`, the authorizers of `securityDefinitions` or `components.securitySchemes`
(`x-amazon-apigateway-authorizer`), `x-amazon-apigateway-binary-media-types` and
`x-amazon-apigateway-cors`. What cannot be served offline (an HTTP integration, a Cognito
authorizer) is a warning and the rest of the API is served; an API whose definition cannot be read
at all is a problem, and nothing of it is served.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..frontdoors.model import Api, Cors, FunctionUrl, JwtAuthorizer, LambdaAuthorizer, MockResponse, Route
from ..frontdoors.router import compile_path
from . import document
from .document import Mapping, line_of
from .errors import TemplateError, Unresolved
from .intrinsics import NO_VALUE, Evaluator, get_att_parts, intrinsic
from .sam import LOCAL_BUCKET

_METHODS = {"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE", "options": "OPTIONS", "head": "HEAD",
            "patch": "PATCH", "x-amazon-apigateway-any-method": "ANY"}
_FUNCTION_IN_URI = re.compile(r":function:([A-Za-z0-9_-]+)")


@dataclass
class Found:
    """What one stack declares: APIs, the Function URL of each function (by the name its `Ref`
    gives), and what to say."""

    apis: list[Api] = field(default_factory=list)
    urls: dict[str, FunctionUrl] = field(default_factory=dict)
    warnings: list[tuple[str, int | None]] = field(default_factory=list)  # (message, line)
    problems: list[tuple[str, int | None]] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)  # definition files


def read(evaluator: Evaluator, created, base: Path) -> Found:
    """Every front door of the evaluator's stack (`created(logical_id)`: its condition holds)."""
    found = Found()
    resources = evaluator.resources
    by_type: dict[str, list[str]] = {}
    for logical_id, resource in resources.items():
        by_type.setdefault(resource.get("Type"), []).append(logical_id)
    for logical_id in by_type.get("AWS::Lambda::Url", []):
        _guard(found, resources, logical_id, lambda lid=logical_id: _url(evaluator, lid, found) if created(lid) else None)
    for logical_id in by_type.get("AWS::ApiGateway::RestApi", []):
        _guard(found, resources, logical_id,
               lambda lid=logical_id: _rest_api(evaluator, lid, by_type, base, found) if created(lid) else None)
    for logical_id in by_type.get("AWS::ApiGatewayV2::Api", []):
        _guard(found, resources, logical_id,
               lambda lid=logical_id: _http_api(evaluator, lid, by_type, base, found) if created(lid) else None)
    return found


def _guard(found: Found, resources: Mapping, logical_id: str, read_one) -> None:
    try:
        read_one()
    except Unresolved as exc:
        found.problems.append((f"{resources[logical_id].get('Type')} {logical_id} is not served: {exc.message}",
                               exc.line or line_of(resources, logical_id)))
    except ValueError as exc:  # a route API Gateway would refuse (runtime_api/frontdoors/model.py)
        found.problems.append((f"{resources[logical_id].get('Type')} {logical_id} is not served: {exc}",
                               line_of(resources, logical_id)))


def _properties(evaluator: Evaluator, logical_id: str) -> Mapping:
    properties = evaluator.resources[logical_id].get("Properties") or Mapping()
    if not isinstance(properties, dict):
        raise Unresolved("Properties must be a mapping", line_of(evaluator.resources, logical_id))
    return properties


def _value(evaluator: Evaluator, properties: Mapping, key: str, default=None):
    if key not in properties:
        return default
    value = evaluator.value(properties[key], line_of(properties, key))
    return default if value is NO_VALUE else value


def _function_of(reference: object) -> str | None:
    """The function a `TargetFunctionArn`, an integration's `uri` or an authorizer's `authorizerUri`
    names: its name, from an ARN or as it is."""
    if not isinstance(reference, str) or not reference:
        return None
    found = _FUNCTION_IN_URI.search(reference)
    if found is not None:
        return found.group(1)
    return reference if re.fullmatch(r"[A-Za-z0-9_-]+", reference) else None


def _cors(value: object, line: int | None) -> Cors | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Unresolved("CORS settings must be a mapping", line)
    keys = {key.lower(): item for key, item in value.items()}

    def strings(name: str) -> list[str]:
        items = keys.get(name, [])
        return [str(item) for item in (items if isinstance(items, list) else [items])]

    max_age = keys.get("maxage")
    return Cors(allow_origins=strings("alloworigins"), allow_methods=strings("allowmethods"),
                allow_headers=strings("allowheaders"), expose_headers=strings("exposeheaders"),
                allow_credentials=keys.get("allowcredentials") in (True, "true"),
                max_age=int(max_age) if isinstance(max_age, (int, str)) and str(max_age).isdigit() else None)


# -- Function URLs ---------------------------------------------------------------------------------

def _url(evaluator: Evaluator, logical_id: str, found: Found) -> None:
    properties = _properties(evaluator, logical_id)
    target = _function_of(_value(evaluator, properties, "TargetFunctionArn"))
    if target is None:
        raise Unresolved("its TargetFunctionArn names no function of this template", line_of(properties))
    auth = _value(evaluator, properties, "AuthType", "NONE")
    mode = _value(evaluator, properties, "InvokeMode", "BUFFERED")
    if auth not in ("NONE", "AWS_IAM") or mode not in ("BUFFERED", "RESPONSE_STREAM"):
        raise Unresolved("AuthType must be NONE or AWS_IAM, InvokeMode BUFFERED or RESPONSE_STREAM",
                         line_of(properties))
    found.urls[target] = FunctionUrl(auth_type=auth, invoke_mode=mode,
                                     cors=_cors(_value(evaluator, properties, "Cors"), line_of(properties, "Cors")))


# -- REST APIs -------------------------------------------------------------------------------------

def _refers_to(node: object, logical_id: str) -> bool:
    """`Ref: X` or `Fn::GetAtt: [X, ...]` naming `logical_id`, read without evaluating (an API's
    RootResourceId is known only once AWS created it)."""
    function = intrinsic(node)
    if function == "Ref":
        return node["Ref"] == logical_id
    if function == "Fn::GetAtt":
        return get_att_parts(node["Fn::GetAtt"])[0] == logical_id
    return False


def _stage(evaluator: Evaluator, api_id: str, by_type: dict, stage_type: str, api_key: str,
           variables_key: str) -> tuple[str | None, dict[str, str]]:
    for logical_id in by_type.get(stage_type, []):
        properties = _properties(evaluator, logical_id)
        if _refers_to(properties.get(api_key), api_id):
            variables = _value(evaluator, properties, variables_key, {}) or {}
            return str(_value(evaluator, properties, "StageName")), {k: str(v) for k, v in variables.items()}
    return None, {}


def _definition(evaluator: Evaluator, properties: Mapping, base: Path, found: Found, what: str) -> Mapping | None:
    """An API's OpenAPI definition: its Body, or the local file its BodyS3Location (SAM's
    DefinitionUri) names; None when it has neither."""
    if "Body" in properties:
        body = evaluator.value(properties["Body"], line_of(properties, "Body"))
        if not isinstance(body, dict):
            raise Unresolved(f"{what}: its OpenAPI definition (Body) is not a mapping", line_of(properties, "Body"))
        return body
    location = _value(evaluator, properties, "BodyS3Location")
    if location is None:
        return None
    if not isinstance(location, dict) or location.get("Bucket") != LOCAL_BUCKET:
        raise Unresolved(f"{what}: its OpenAPI definition is in S3, which is not available offline",
                         line_of(properties, "BodyS3Location"))
    path = Path(os.path.abspath(base / str(location.get("Key"))))
    found.watched.append(str(path))
    try:
        body = document.read(path, str(path))
    except OSError as exc:
        raise Unresolved(f"{what}: its OpenAPI definition {path} cannot be read: {exc.strerror}",
                         line_of(properties, "BodyS3Location")) from None
    except TemplateError as exc:
        raise Unresolved(f"{what}: its OpenAPI definition cannot be read: {exc}",
                         line_of(properties, "BodyS3Location")) from None
    if not isinstance(body, dict):
        raise Unresolved(f"{what}: its OpenAPI definition {path} is not a mapping", line_of(properties, "BodyS3Location"))
    return body


def _rest_api(evaluator: Evaluator, logical_id: str, by_type: dict, base: Path, found: Found) -> None:
    properties = _properties(evaluator, logical_id)
    line = line_of(evaluator.resources, logical_id)
    stage, variables = _stage(evaluator, logical_id, by_type, "AWS::ApiGateway::Stage", "RestApiId", "Variables")
    if stage is None:
        for deployment in by_type.get("AWS::ApiGateway::Deployment", []):
            deployed = _properties(evaluator, deployment)
            if _refers_to(deployed.get("RestApiId"), logical_id) and "StageName" in deployed:
                stage = str(_value(evaluator, deployed, "StageName"))
                description = _value(evaluator, deployed, "StageDescription", {}) or {}
                variables = {k: str(v) for k, v in (description.get("Variables") or {}).items()}
    binary = [media.replace("~1", "/") for media in _value(evaluator, properties, "BinaryMediaTypes", []) or []]
    api = Api(name=logical_id, kind="REST", stage=stage or "Prod", stage_variables=variables,
              binary_media_types=binary, api_keys=_api_keys(evaluator, by_type),
              source=f"{evaluator.shown}:{line}")
    body = _definition(evaluator, properties, base, found, f"REST API {logical_id}")
    if body is not None:
        _openapi(body, api, found, rest=True)
    else:
        _rest_resources(evaluator, logical_id, by_type, api, found)
    found.apis.append(api)


def _api_keys(evaluator: Evaluator, by_type: dict) -> list[str]:
    keys = []
    for logical_id in by_type.get("AWS::ApiGateway::ApiKey", []):
        properties = _properties(evaluator, logical_id)
        if "Value" in properties:
            keys.append(str(_value(evaluator, properties, "Value")))
    return keys


def _rest_resources(evaluator: Evaluator, api_id: str, by_type: dict, api: Api, found: Found) -> None:
    """A REST API made of AWS::ApiGateway::Resource and Method resources (as `cdk synth` writes it)."""
    parts: dict[str, tuple[object, str]] = {}
    for logical_id in by_type.get("AWS::ApiGateway::Resource", []):
        properties = _properties(evaluator, logical_id)
        if _refers_to(properties.get("RestApiId"), api_id):
            parts[logical_id] = (properties.get("ParentId"), str(_value(evaluator, properties, "PathPart")))

    def path_of(node: object, depth: int = 0) -> str:
        if _refers_to(node, api_id) or depth > 64:
            return ""
        target = node.get("Ref") if intrinsic(node) == "Ref" else None
        if target not in parts:
            return ""
        parent, part = parts[target]
        return f"{path_of(parent, depth + 1)}/{part}"

    authorizers = {}
    for logical_id in by_type.get("AWS::ApiGateway::Authorizer", []):
        properties = _properties(evaluator, logical_id)
        if not _refers_to(properties.get("RestApiId"), api_id):
            continue
        kind = _value(evaluator, properties, "Type")
        if kind not in ("TOKEN", "REQUEST"):
            found.warnings.append((f"REST API {api_id}: authorizer {logical_id} of type {kind} is not run here: its "
                                   "routes are served without it", line_of(properties)))
            continue
        name = str(_value(evaluator, properties, "Name", logical_id))
        authorizers[logical_id] = name
        sources = str(_value(evaluator, properties, "IdentitySource", "") or "")
        api.authorizers.append(LambdaAuthorizer(
            name=name, function=_function_of(_value(evaluator, properties, "AuthorizerUri")) or "",
            type=kind, identity_sources=[s.strip() for s in sources.split(",") if s.strip()],
            validation_expression=_value(evaluator, properties, "IdentityValidationExpression")))
    for logical_id in by_type.get("AWS::ApiGateway::Method", []):
        properties = _properties(evaluator, logical_id)
        if not _refers_to(properties.get("RestApiId"), api_id):
            continue
        path = path_of(properties.get("ResourceId")) or "/"
        method = str(_value(evaluator, properties, "HttpMethod")).upper()
        integration = _value(evaluator, properties, "Integration", {}) or {}
        route = Route(method=method, path=path, payload_format="1.0",
                      api_key_required=_value(evaluator, properties, "ApiKeyRequired") in (True, "true"),
                      operation_name=_value(evaluator, properties, "OperationName"))
        authorization = _value(evaluator, properties, "AuthorizationType", "NONE")
        if authorization == "AWS_IAM":
            route.authorizer = "AWS_IAM"
        elif authorization == "CUSTOM":
            target = properties.get("AuthorizerId")
            route.authorizer = next((name for lid, name in authorizers.items() if _refers_to(target, lid)), None)
        _integration(integration, route, api, found, f"{method} {path}", rest=True,
                     kind_key="Type", uri_key="Uri")


# -- HTTP APIs -------------------------------------------------------------------------------------

def _http_api(evaluator: Evaluator, logical_id: str, by_type: dict, base: Path, found: Found) -> None:
    properties = _properties(evaluator, logical_id)
    line = line_of(evaluator.resources, logical_id)
    stage, variables = _stage(evaluator, logical_id, by_type, "AWS::ApiGatewayV2::Stage", "ApiId", "StageVariables")
    protocol = _value(evaluator, properties, "ProtocolType", "HTTP")
    if protocol != "HTTP" and "Body" not in properties and "BodyS3Location" not in properties:
        found.warnings.append((f"{protocol} API {logical_id} is not served: lambdalet serves HTTP and REST APIs",
                               line))
        return
    api = Api(name=logical_id, kind="HTTP", stage=stage or "$default", stage_variables=variables,
              cors=_cors(_value(evaluator, properties, "CorsConfiguration"), line_of(properties, "CorsConfiguration")),
              source=f"{evaluator.shown}:{line}")
    body = _definition(evaluator, properties, base, found, f"HTTP API {logical_id}")
    if body is not None:
        _openapi(body, api, found, rest=False)
    elif "Target" in properties:  # quick create: every request to the target
        target = _function_of(_value(evaluator, properties, "Target"))
        api.routes.append(Route(method="ANY", path="$default", function=target))
    else:
        _http_routes(evaluator, logical_id, by_type, api, found)
    found.apis.append(api)


def _http_routes(evaluator: Evaluator, api_id: str, by_type: dict, api: Api, found: Found) -> None:
    """An HTTP API made of AWS::ApiGatewayV2::Route, Integration and Authorizer resources."""
    integrations = {}
    for logical_id in by_type.get("AWS::ApiGatewayV2::Integration", []):
        properties = _properties(evaluator, logical_id)
        if _refers_to(properties.get("ApiId"), api_id):
            integrations[logical_id] = properties
    authorizers = {}
    for logical_id in by_type.get("AWS::ApiGatewayV2::Authorizer", []):
        properties = _properties(evaluator, logical_id)
        if not _refers_to(properties.get("ApiId"), api_id):
            continue
        name = str(_value(evaluator, properties, "Name", logical_id))
        kind = _value(evaluator, properties, "AuthorizerType")
        sources = _value(evaluator, properties, "IdentitySource", []) or []
        sources = sources if isinstance(sources, list) else [sources]
        if kind == "JWT":
            jwt = _value(evaluator, properties, "JwtConfiguration", {}) or {}
            audience = jwt.get("Audience") or []
            api.authorizers.append(JwtAuthorizer(name=name, identity_sources=[str(s) for s in sources] or
                                                 ["$request.header.Authorization"], issuer=jwt.get("Issuer"),
                                                 audience=[str(a) for a in audience]))
        else:
            api.authorizers.append(LambdaAuthorizer(
                name=name, function=_function_of(_value(evaluator, properties, "AuthorizerUri")) or "",
                identity_sources=[str(s) for s in sources],
                payload_format=str(_value(evaluator, properties, "AuthorizerPayloadFormatVersion", "1.0")),
                simple_responses=_value(evaluator, properties, "EnableSimpleResponses") in (True, "true")))
        authorizers[logical_id] = name
    for logical_id in by_type.get("AWS::ApiGatewayV2::Route", []):
        properties = _properties(evaluator, logical_id)
        if not _refers_to(properties.get("ApiId"), api_id):
            continue
        key = str(_value(evaluator, properties, "RouteKey"))
        method, _, path = key.partition(" ")
        route = Route(method=method.upper() if path else "ANY", path=path or "$default",
                      authorization_scopes=[str(s) for s in _value(evaluator, properties, "AuthorizationScopes", [])])
        authorization = _value(evaluator, properties, "AuthorizationType", "NONE")
        if authorization == "AWS_IAM":
            route.authorizer = "AWS_IAM"
        elif authorization in ("JWT", "CUSTOM"):
            target = properties.get("AuthorizerId")
            route.authorizer = next((name for lid, name in authorizers.items() if _refers_to(target, lid)), None)
        target = properties.get("Target")
        integration_id = None
        if intrinsic(target) == "Fn::Join":  # integrations/ + Ref Integration
            integration_id = next((lid for lid in integrations if _mentions(target, lid)), None)
        else:
            text = _value(evaluator, properties, "Target", "")
            integration_id = next((lid for lid in integrations if str(text).endswith(lid)), None)
        if integration_id is None:
            found.warnings.append((f"HTTP API {api_id}: route {key} has no integration here; not served",
                                   line_of(properties)))
            continue
        integration = integrations[integration_id]
        settings = {k: _value(evaluator, integration, k) for k in ("IntegrationType", "IntegrationUri",
                                                                   "PayloadFormatVersion") if k in integration}
        _integration(settings, route, api, found, key, rest=False, kind_key="IntegrationType",
                     uri_key="IntegrationUri", format_key="PayloadFormatVersion")


def _mentions(node: object, logical_id: str) -> bool:
    if _refers_to(node, logical_id):
        return True
    if isinstance(node, dict):
        return any(_mentions(item, logical_id) for item in node.values())
    if isinstance(node, list):
        return any(_mentions(item, logical_id) for item in node)
    return False


# -- OpenAPI ---------------------------------------------------------------------------------------

def _integration(integration: dict, route: Route, api: Api, found: Found, where: str, *, rest: bool,
                 kind_key: str = "type", uri_key: str = "uri", format_key: str = "payloadFormatVersion") -> None:
    """Add `route` to `api` as its integration makes it: a function (aws_proxy), a mock, or a warning."""
    kind = str(integration.get(kind_key, "")).lower()
    if kind == "aws_proxy":
        route.function = _function_of(integration.get(uri_key))
        if route.function is None:
            found.warnings.append((f"{api.kind} API {api.name}: {where}: its integration names no function; "
                                   "not served", None))
            return
        if not rest:
            version = str(integration.get(format_key, "2.0"))
            if version not in ("1.0", "2.0"):
                found.warnings.append((f"HTTP API {api.name}: {where}: payload format {version} is not 1.0 or 2.0; "
                                       "not served", None))
                return
            route.payload_format = version
    elif kind == "mock" and rest:
        default = (integration.get("responses") or {}).get("default") or {}
        headers = {}
        for name, value in (default.get("responseParameters") or {}).items():
            if str(name).startswith("method.response.header.") and isinstance(value, str):
                headers[name.removeprefix("method.response.header.")] = value.strip("'")
        status = str(default.get("statusCode", "200"))
        route.mock = MockResponse(status=int(status) if status.isdigit() else 200, headers=headers)
    else:
        found.warnings.append((f"{api.kind} API {api.name}: {where}: a {kind or 'missing'} integration is not "
                               "served here (only Lambda proxy integrations and mocks)", None))
        return
    api.routes.append(route)


def _openapi(body: dict, api: Api, found: Found, *, rest: bool) -> None:
    """Routes, authorizers, binary media types and CORS from an OpenAPI (or Swagger 2.0) definition."""
    where = f"{api.kind} API {api.name}"
    paths = body.get("paths")
    if not isinstance(paths, dict):
        raise Unresolved(f"{where}: its OpenAPI definition has no paths mapping", line_of(body))
    schemes = (body.get("securityDefinitions") if rest or "swagger" in body
               else (body.get("components") or {}).get("securitySchemes")) or {}
    if not isinstance(schemes, dict):
        raise Unresolved(f"{where}: its security schemes are not a mapping", line_of(body))
    api_key_schemes = set()
    for name, scheme in schemes.items():
        if not isinstance(scheme, dict):
            continue
        authorizer = scheme.get("x-amazon-apigateway-authorizer")
        if not isinstance(authorizer, dict):
            if scheme.get("type") == "apiKey" and str(scheme.get("name", "")).lower() == "x-api-key":
                api_key_schemes.add(name)
            continue
        kind = str(authorizer.get("type", "")).lower()
        sources = authorizer.get("identitySource", [])
        sources = [s.strip() for s in sources.split(",")] if isinstance(sources, str) else [str(s) for s in sources]
        if kind == "jwt":
            jwt = authorizer.get("jwtConfiguration") or {}
            api.authorizers.append(JwtAuthorizer(name=name, identity_sources=sources or ["$request.header.Authorization"],
                                                 issuer=jwt.get("issuer"), audience=list(jwt.get("audience") or [])))
        elif kind in ("token", "request"):
            if kind == "token" and not sources and scheme.get("name"):
                sources = [f"method.request.header.{scheme['name']}"]
            api.authorizers.append(LambdaAuthorizer(
                name=name, function=_function_of(authorizer.get("authorizerUri")) or "", type=kind.upper(),
                identity_sources=[s for s in sources if s],
                validation_expression=authorizer.get("identityValidationExpression"),
                payload_format=str(authorizer.get("authorizerPayloadFormatVersion", "1.0" if rest else "2.0")),
                simple_responses=authorizer.get("enableSimpleResponses") in (True, "true")))
        else:
            found.warnings.append((f"{where}: authorizer {name} of type {kind} is not run here: its routes are "
                                   "served without it", None))
    binary = body.get("x-amazon-apigateway-binary-media-types") or []
    api.binary_media_types = list(dict.fromkeys([*api.binary_media_types, *(str(m) for m in binary)]))
    if body.get("x-amazon-apigateway-cors") is not None and api.cors is None:
        api.cors = _cors(body["x-amazon-apigateway-cors"], line_of(body))
    known = {authorizer.name for authorizer in api.authorizers}
    default_security = body.get("security") or []
    for path, methods in paths.items():
        if not isinstance(methods, dict):
            raise Unresolved(f"{where}: path {path} is not a mapping", line_of(paths, path))
        if path != "$default":
            try:
                compile_path(str(path))
            except ValueError as exc:
                raise Unresolved(f"{where}: {exc}", line_of(paths, path)) from None
        for key, operation in methods.items():
            method = _METHODS.get(str(key).lower())
            if method is None or not isinstance(operation, dict):
                continue
            route = Route(method=method, path=str(path), payload_format="1.0" if rest else "2.0",
                          operation_name=operation.get("operationId") if rest else None)
            for requirement in operation.get("security", default_security) or []:
                for scheme, scopes in (requirement.items() if isinstance(requirement, dict) else ()):
                    if scheme in api_key_schemes:
                        route.api_key_required = True
                    elif scheme in known:
                        route.authorizer = scheme
                        route.authorization_scopes = [str(scope) for scope in scopes or []]
            auth = operation.get("x-amazon-apigateway-auth")
            if isinstance(auth, dict) and str(auth.get("type", "")).upper() == "AWS_IAM":
                route.authorizer = "AWS_IAM"
            integration = operation.get("x-amazon-apigateway-integration")
            if not isinstance(integration, dict):
                found.warnings.append((f"{where}: {method} {path} has no x-amazon-apigateway-integration; not served",
                                       line_of(methods, key)))
                continue
            _integration(integration, route, api, found, f"{method} {path}", rest=rest)
