"""Who may reach a route (pure): identity sources, the event a Lambda authorizer receives and what
its answer decides, JWT claims, a Function URL's SigV4 header, as API Gateway and Lambda document
them ("Use API Gateway Lambda authorizers", "Working with AWS Lambda authorizers for HTTP APIs",
"Controlling access to HTTP APIs with JWT authorizers", "Security and auth model for Lambda
function URLs").

Nothing is cached (every request asks the authorizer, as with caching off). Decisions are values:
`Allowed` carries what the integration sees in `requestContext.authorizer`; `Refused` says which
answer the caller gets (responses.Refusal).
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from .events import HttpRequest
from .model import JwtAuthorizer, LambdaAuthorizer
from .responses import Refusal


@dataclass(frozen=True, slots=True)
class Allowed:
    authorizer: dict[str, Any] | None  # requestContext.authorizer for the integration


@dataclass(frozen=True, slots=True)
class Refused:
    why: Refusal
    reason: str = ""  # for the log


Decision = Allowed | Refused

_SOURCE = re.compile(r"\$?(?:method\.)?(request\.header|request\.querystring|stageVariables|context)\.(.+)\Z")


def identity_values(sources: list[str], request: HttpRequest, *, stage_variables: dict[str, str],
                    context: dict[str, Any]) -> list[str] | None:
    """Each identity source's value, in order; None when one is missing (API Gateway answers 401
    without calling the authorizer)."""
    values = []
    query = dict(parse_qsl(request.query, keep_blank_values=True))
    for source in sources:
        found = _SOURCE.match(source.strip())
        if found is None:
            return None
        kind, name = found.groups()
        if kind == "request.header":
            value = request.header(name)
        elif kind == "request.querystring":
            value = query.get(name)
        elif kind == "stageVariables":
            value = stage_variables.get(name)
        else:
            value = _dig(context, name)
        if value is None or value == "":
            return None
        values.append(str(value))
    return values


def _dig(document: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document


def execute_api_arn(region: str, account_id: str, api_id: str, stage: str, method: str, path: str) -> str:
    """A methodArn (REST) or routeArn (HTTP API): arn:aws:execute-api:region:account:api/stage/METHOD/path."""
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{method}{path}"


# -- Lambda authorizers -------------------------------------------------------------------------

def token_refused(authorizer: LambdaAuthorizer, token: str) -> Refused | None:
    """A REST TOKEN authorizer's `IdentityValidationExpression`: a token that does not match it is
    refused (401) without calling the authorizer."""
    expression = authorizer.validation_expression
    if not expression:
        return None
    try:
        matches = re.fullmatch(expression, token) is not None
    except re.error:
        return Refused(Refusal.AUTHORIZER_FAILED, f"its validation expression {expression!r} is not a regular expression")
    return None if matches else Refused(Refusal.UNAUTHORIZED, "the token does not match the validation expression")


def token_event(token: str, method_arn: str) -> dict[str, Any]:
    """A REST API TOKEN authorizer's event."""
    return {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}


def request_event(authorizer: LambdaAuthorizer, integration_event: dict[str, Any], identity: list[str],
                  arn: str, *, rest: bool) -> dict[str, Any]:
    """A REQUEST authorizer's event: the route's own event (1.0 or 2.0) with the authorizer's fields."""
    event = {key: value for key, value in integration_event.items() if key != "body" and key != "isBase64Encoded"}
    event["type"] = "REQUEST"
    if rest:
        event["methodArn"] = arn
    elif authorizer.payload_format == "2.0":
        event["routeArn"] = arn
        event["identitySource"] = identity
    else:
        event["methodArn"] = arn
        event["identitySource"] = ",".join(identity)
        event["authorizationToken"] = ",".join(identity)
    return event


def decide(authorizer: LambdaAuthorizer, payload: bytes, arn: str, *, rest: bool) -> Decision:
    """What a Lambda authorizer's answer decides for the request whose ARN is `arn`."""
    try:
        answer = json.loads(payload)
    except ValueError:
        return Refused(Refusal.AUTHORIZER_FAILED, "its answer is not JSON")
    if not isinstance(answer, dict):
        return Refused(Refusal.AUTHORIZER_FAILED, "its answer is not a JSON object")
    context = answer.get("context") or {}
    if not isinstance(context, dict):
        return Refused(Refusal.AUTHORIZER_FAILED, "its context is not an object")
    if not rest and authorizer.payload_format == "2.0" and authorizer.simple_responses:
        allowed = answer.get("isAuthorized")
        if not isinstance(allowed, bool):
            return Refused(Refusal.AUTHORIZER_FAILED, "a simple response needs isAuthorized, true or false")
        return Allowed({"lambda": context}) if allowed else Refused(Refusal.FORBIDDEN, "isAuthorized is false")
    effect = _policy_effect(answer.get("policyDocument"), arn)
    if isinstance(effect, Refused):
        return effect
    if effect != "Allow":
        return Refused(Refusal.FORBIDDEN, f"its policy does not allow execute-api:Invoke on {arn}")
    principal = answer.get("principalId")
    if rest:
        if any(isinstance(value, (dict, list)) for value in context.values()):
            return Refused(Refusal.AUTHORIZER_FAILED, "a REST authorizer's context values must be strings, "
                           "numbers or booleans")
        shown = {key: _context_text(value) for key, value in context.items()}
        return Allowed({"principalId": principal, **shown, "integrationLatency": 0})
    found: dict[str, Any] = {"lambda": context}
    if principal is not None:
        found["principalId"] = principal
    return Allowed(found)


def _context_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _policy_effect(document: Any, arn: str) -> str | Refused | None:
    """"Allow", "Deny" or None (nothing about this ARN) from an IAM policy; an explicit Deny wins."""
    if not isinstance(document, dict) or not isinstance(document.get("Statement"), list):
        return Refused(Refusal.AUTHORIZER_FAILED, "its answer has no policyDocument with a Statement list")
    effect = None
    for statement in document["Statement"]:
        if not isinstance(statement, dict):
            return Refused(Refusal.AUTHORIZER_FAILED, "a policy statement is not an object")
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = actions if isinstance(actions, list) else [actions]
        resources = resources if isinstance(resources, list) else [resources]
        if not any(_wildcard(action, "execute-api:Invoke") for action in actions if isinstance(action, str)):
            continue
        if not any(_wildcard(resource, arn) for resource in resources if isinstance(resource, str)):
            continue
        if statement.get("Effect") == "Deny":
            return "Deny"
        if statement.get("Effect") == "Allow":
            effect = "Allow"
    return effect


def _wildcard(pattern: str, value: str) -> bool:
    """IAM's `*` (any run of characters) and `?` (one character)."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def failure(error_body: bytes) -> Refused:
    """An authorizer that failed: "Unauthorized" (what authorizers raise to refuse a token) is 401,
    anything else is the authorizer's failure."""
    try:
        message = json.loads(error_body).get("errorMessage")
    except (ValueError, AttributeError):
        message = None
    if message == "Unauthorized":
        return Refused(Refusal.UNAUTHORIZED, "the authorizer raised Unauthorized")
    return Refused(Refusal.AUTHORIZER_FAILED, f"the authorizer failed: {error_body[:200]!r}")


# -- JWT authorizers ----------------------------------------------------------------------------

def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_decide(authorizer: JwtAuthorizer, token: str, scopes_wanted: list[str], *, v2: bool,
               now: float | None = None) -> Decision:
    """Check a JWT as an HTTP API's JWT authorizer does: well formed, its issuer and audience (or
    client_id), exp and nbf, and one of the route's scopes; its signature only against the
    authorizer's local JWKS file."""
    now = time.time() if now is None else now
    token = token.removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) != 3:
        return Refused(Refusal.UNAUTHORIZED, "the token is not a JWT")
    try:
        header, claims = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, UnicodeDecodeError):
        return Refused(Refusal.UNAUTHORIZED, "the token's header or claims are not base64url JSON")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return Refused(Refusal.UNAUTHORIZED, "the token's header or claims are not JSON objects")
    if authorizer.issuer is not None and claims.get("iss") != authorizer.issuer:
        return Refused(Refusal.UNAUTHORIZED, f"the token's issuer {claims.get('iss')!r} is not {authorizer.issuer!r}")
    if authorizer.audience:
        audiences = claims.get("aud", claims.get("client_id"))
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if not set(authorizer.audience) & {audience for audience in audiences if isinstance(audience, str)}:
            return Refused(Refusal.UNAUTHORIZED, "the token's audience is not one the authorizer accepts")
    if isinstance(claims.get("exp"), (int, float)) and claims["exp"] <= now:
        return Refused(Refusal.UNAUTHORIZED, "the token has expired")
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now:
        return Refused(Refusal.UNAUTHORIZED, "the token is not valid yet")
    if authorizer.jwks is not None:
        problem = _signature_problem(token, header, authorizer.jwks)
        if problem is not None:
            return Refused(Refusal.UNAUTHORIZED, problem)
    granted = str(claims.get("scope", claims.get("scp", "")) or "")
    granted_scopes = granted.split() if isinstance(granted, str) else []
    if scopes_wanted and not set(scopes_wanted) & set(granted_scopes):
        return Refused(Refusal.FORBIDDEN, f"the token grants none of the route's scopes {scopes_wanted}")
    shown = {key: _claim_text(value) for key, value in claims.items()}
    found = {"claims": shown, "scopes": granted_scopes or None}
    return Allowed({"jwt": found} if v2 else found)


def _claim_text(value: Any) -> str:
    """Claims reach the integration as strings (a list as `[a b]`, as API Gateway shows it)."""
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _signature_problem(token: str, header: dict, jwks_path: str) -> str | None:
    """None when the token is signed by a key of the JWKS file (PyJWT, imported only here)."""
    try:
        import jwt
    except ImportError:
        return "checking a JWT's signature needs PyJWT: pip install 'lambdalet[jwt]'"
    try:
        with open(jwks_path) as file:
            keys = jwt.PyJWKSet.from_dict(json.load(file))
    except (OSError, ValueError, jwt.exceptions.PyJWTError) as exc:
        return f"the JWKS file {jwks_path} cannot be read: {exc}"
    key = next((key for key in keys.keys if key.key_id == header.get("kid")), None)
    if key is None:
        return f"no key {header.get('kid')!r} in {jwks_path}"
    try:
        jwt.decode(token, key=key.key, algorithms=[header.get("alg", "RS256")],
                   options={"verify_aud": False, "verify_iss": False, "verify_exp": False, "verify_nbf": False})
    except jwt.exceptions.PyJWTError as exc:
        return f"the token's signature does not verify: {exc}"
    return None


# -- a Function URL's AWS_IAM -------------------------------------------------------------------

_SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
                    r"(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*), ?"
                    r"Signature=(?P<signature>[0-9a-f]{64})\Z")


def iam_decide(request: HttpRequest, account_id: str) -> Decision:
    """AWS_IAM (a Function URL's AuthType, a route's authorization): a SigV4 Authorization header that is present and well
    formed, with the X-Amz-Date it signs. The signature is not verified: no IAM here knows the key."""
    authorization = request.header("authorization")
    if authorization is None:
        return Refused(Refusal.SIGNATURE, "no Authorization header (AWS_IAM)")
    found = _SIGV4.match(authorization.strip())
    if found is None:
        return Refused(Refusal.SIGNATURE, "the Authorization header is not a SigV4 signature")
    if request.header("x-amz-date") is None and "x-amz-date" in found["signed"].split(";"):
        return Refused(Refusal.SIGNATURE, "the signature signs X-Amz-Date, which the request lacks")
    key = found["key"]
    return Allowed({"iam": {
        "accessKey": key,
        "accountId": account_id,
        "callerId": f"AIDA{key[4:20]}",
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{account_id}:user/local",
        "userId": f"AIDA{key[4:20]}",
    }})
