"""runtime_api/frontdoors/authorizers.py: identity sources, what a Lambda authorizer's answer decides
(IAM policies and simple responses), JWT claims and signatures (a real RSA key and JWKS, signed by
PyJWT), and a Function URL's SigV4 header."""

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime_api.frontdoors import authorizers
from runtime_api.frontdoors.authorizers import Allowed, Refused
from runtime_api.frontdoors.events import HttpRequest
from runtime_api.frontdoors.model import JwtAuthorizer, LambdaAuthorizer
from runtime_api.frontdoors.responses import Refusal

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/Prod/GET/pets/7"


def _request(headers=(), query="", method="GET"):
    return HttpRequest(method=method, path="/pets/7", query=query, headers=list(headers))


def test_identity_sources_of_every_kind():
    request = _request([("Authorization", "Bearer t"), ("X-User", "ann")], query="q=1")
    values = authorizers.identity_values(
        ["method.request.header.Authorization", "$request.header.X-User", "method.request.querystring.q",
         "stageVariables.color", "$context.requestId"], request,
        stage_variables={"color": "blue"}, context={"requestId": "r-1"})
    assert values == ["Bearer t", "ann", "1", "blue", "r-1"]


def test_a_missing_identity_source_means_no_call():
    assert authorizers.identity_values(["$request.header.Authorization"], _request(), stage_variables={},
                                       context={}) is None


def _policy(effect, resource=ARN, context=None, principal="user-1"):
    answer = {"principalId": principal, "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}}
    if context is not None:
        answer["context"] = context
    return json.dumps(answer).encode()


REST_TOKEN = LambdaAuthorizer(name="T", function="auth", type="TOKEN")


def test_rest_policy_allow_passes_principal_and_context_as_strings():
    decision = authorizers.decide(REST_TOKEN, _policy("Allow", context={"tier": "gold", "n": 3, "ok": True}), ARN,
                                  rest=True)
    assert decision == Allowed({"principalId": "user-1", "tier": "gold", "n": "3", "ok": "true",
                                "integrationLatency": 0})


@pytest.mark.parametrize("resource", ["arn:aws:execute-api:us-east-1:123456789012:abc123/*",
                                      "arn:aws:execute-api:us-east-1:123456789012:abc123/Prod/GET/pets/?",
                                      ["arn:aws:execute-api:*:*:other/*", ARN]])
def test_policy_resources_with_wildcards(resource):
    assert isinstance(authorizers.decide(REST_TOKEN, _policy("Allow", resource), ARN, rest=True), Allowed)


def test_policy_deny_or_no_allow_for_this_arn_is_forbidden():
    assert authorizers.decide(REST_TOKEN, _policy("Deny"), ARN, rest=True).why is Refusal.FORBIDDEN
    other = _policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:abc123/Prod/POST/*")
    assert authorizers.decide(REST_TOKEN, other, ARN, rest=True).why is Refusal.FORBIDDEN
    both = json.dumps({"principalId": "u", "policyDocument": {"Statement": [
        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
        {"Action": "execute-api:*", "Effect": "Deny", "Resource": ARN}]}}).encode()
    assert authorizers.decide(REST_TOKEN, both, ARN, rest=True).why is Refusal.FORBIDDEN  # an explicit Deny wins


@pytest.mark.parametrize("answer", [b"not json", b"[]", b'{"principalId": "u"}', b'{"policyDocument": {"Statement": 5}}',
                                    json.dumps({"principalId": "u", "context": {"nested": {"a": 1}}, "policyDocument": {
                                        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow",
                                                       "Resource": ARN}]}}).encode()])
def test_answers_that_cannot_be_read_are_the_authorizers_failure(answer):
    assert authorizers.decide(REST_TOKEN, answer, ARN, rest=True).why is Refusal.AUTHORIZER_FAILED


HTTP_SIMPLE = LambdaAuthorizer(name="S", function="auth", payload_format="2.0", simple_responses=True)


def test_http_simple_responses():
    allowed = authorizers.decide(HTTP_SIMPLE, b'{"isAuthorized": true, "context": {"user": {"id": 1}}}', ARN, rest=False)
    assert allowed == Allowed({"lambda": {"user": {"id": 1}}})  # HTTP APIs keep the context's JSON as it is
    assert authorizers.decide(HTTP_SIMPLE, b'{"isAuthorized": false}', ARN, rest=False).why is Refusal.FORBIDDEN
    assert authorizers.decide(HTTP_SIMPLE, b'{"isAuthorized": "yes"}', ARN, rest=False).why is Refusal.AUTHORIZER_FAILED


def test_http_iam_policy_responses():
    decision = authorizers.decide(LambdaAuthorizer(name="P", function="a", payload_format="2.0"),
                                  _policy("Allow", context={"k": "v"}), ARN, rest=False)
    assert decision == Allowed({"lambda": {"k": "v"}, "principalId": "user-1"})


def test_request_events_per_format():
    integration = {"version": "2.0", "routeKey": "GET /pets/{id}", "headers": {"a": "b"}, "body": "x",
                   "isBase64Encoded": False}
    v2 = authorizers.request_event(HTTP_SIMPLE, integration, ["tok"], ARN, rest=False)
    assert v2["type"] == "REQUEST" and v2["routeArn"] == ARN and v2["identitySource"] == ["tok"]
    assert "body" not in v2 and v2["headers"] == {"a": "b"}
    v1 = authorizers.request_event(LambdaAuthorizer(name="R", function="a"), {"resource": "/"}, ["a", "b"], ARN,
                                   rest=False)
    assert v1["identitySource"] == "a,b" and v1["authorizationToken"] == "a,b" and v1["methodArn"] == ARN
    rest = authorizers.request_event(LambdaAuthorizer(name="R", function="a"), {"resource": "/"}, [], ARN, rest=True)
    assert rest == {"resource": "/", "type": "REQUEST", "methodArn": ARN}
    assert authorizers.token_event("Bearer x", ARN) == {"type": "TOKEN", "authorizationToken": "Bearer x",
                                                        "methodArn": ARN}


def test_an_authorizer_raising_unauthorized_is_401():
    assert authorizers.failure(b'{"errorMessage": "Unauthorized", "errorType": "Exception"}').why is Refusal.UNAUTHORIZED
    assert authorizers.failure(b'{"errorMessage": "boom"}').why is Refusal.AUTHORIZER_FAILED


# -- JWT -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return key, str(jwks)


def _token(key, **claims):
    base = {"iss": "https://issuer.localhost", "aud": "my-app", "sub": "ann", "exp": int(time.time()) + 600,
            "scope": "read write", "groups": ["a", "b"]}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm="RS256", headers={"kid": "k1"})


JWT = JwtAuthorizer(name="J", issuer="https://issuer.localhost", audience=["my-app"])


def test_jwt_claims_and_scopes_reach_the_integration(signing):
    key, _ = signing
    decision = authorizers.jwt_decide(JWT, "Bearer " + _token(key), ["read"], v2=True)
    assert isinstance(decision, Allowed)
    claims = decision.authorizer["jwt"]["claims"]
    assert claims["sub"] == "ann" and claims["groups"] == "[a b]" and claims["exp"].isdigit()
    assert decision.authorizer["jwt"]["scopes"] == ["read", "write"]
    v1 = authorizers.jwt_decide(JWT, _token(key), [], v2=False)
    assert v1.authorizer["claims"]["sub"] == "ann"  # payload 1.0: claims and scopes at the top


@pytest.mark.parametrize("claims, why", [
    ({"iss": "https://other"}, Refusal.UNAUTHORIZED),
    ({"aud": "someone-else"}, Refusal.UNAUTHORIZED),
    ({"exp": 1000}, Refusal.UNAUTHORIZED),
    ({"nbf": 4_000_000_000}, Refusal.UNAUTHORIZED),
    ({"scope": "write"}, Refusal.FORBIDDEN),  # the route wants read
])
def test_jwt_refusals(signing, claims, why):
    key, _ = signing
    assert authorizers.jwt_decide(JWT, _token(key, **claims), ["read"], v2=True).why is why


def test_jwt_that_is_not_a_jwt():
    assert authorizers.jwt_decide(JWT, "Bearer nonsense", [], v2=True).why is Refusal.UNAUTHORIZED


def test_jwt_signature_is_checked_against_a_local_jwks(signing):
    key, jwks = signing
    with_keys = JwtAuthorizer(name="J", issuer="https://issuer.localhost", audience=["my-app"], jwks=jwks)
    assert isinstance(authorizers.jwt_decide(with_keys, _token(key), [], v2=True), Allowed)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = authorizers.jwt_decide(with_keys, _token(other), [], v2=True)
    assert forged.why is Refusal.UNAUTHORIZED and "signature" in forged.reason
    # Without a JWKS the same forged token passes: the signature is not checked then.
    assert isinstance(authorizers.jwt_decide(JWT, _token(other), [], v2=True), Allowed)


# -- a Function URL's AWS_IAM ----------------------------------------------------------------------

SIGNED = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/lambda/aws4_request, "
          "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32)


def test_iam_needs_a_well_formed_sigv4_header():
    allowed = authorizers.iam_decide(_request([("Authorization", SIGNED), ("X-Amz-Date", "20240101T000000Z")]),
                                     "123456789012")
    assert allowed.authorizer["iam"]["accessKey"] == "AKIAIOSFODNN7EXAMPLE"
    assert allowed.authorizer["iam"]["accountId"] == "123456789012"
    assert authorizers.iam_decide(_request(), "1").why is Refusal.SIGNATURE
    assert authorizers.iam_decide(_request([("Authorization", "Bearer x")]), "1").why is Refusal.SIGNATURE
    assert authorizers.iam_decide(_request([("Authorization", SIGNED)]), "1").why is Refusal.SIGNATURE  # no X-Amz-Date


def test_token_validation_expression():
    validated = LambdaAuthorizer(name="T", function="a", type="TOKEN", validation_expression=r"Bearer [a-z]+")
    assert authorizers.token_refused(validated, "Bearer abc") is None
    assert authorizers.token_refused(validated, "Bearer ABC").why is Refusal.UNAUTHORIZED
    assert authorizers.token_refused(REST_TOKEN, "anything") is None
