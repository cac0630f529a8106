"""The functions of the front doors' test application (template.yaml)."""

import base64
import json


def echo(event, context):
    """The event it received, as a payload 2.0 response with a cookie."""
    return {"statusCode": 200, "headers": {"content-type": "application/json", "x-echo": "yes"},
            "body": json.dumps(event), "cookies": ["seen=1; Path=/"]}


def echo_v1(event, context):
    """The event it received, as a payload 1.0 response with multi-value headers."""
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"X-Multi": ["a", "b"]}, "body": json.dumps(event)}


def png(event, context):
    """A binary body, base64 as Lambda proxies take it."""
    return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
            "body": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(), "isBase64Encoded": True}


def hello(event, context):
    """A plain return: JSON with status 200."""
    return {"message": "hello", "path": event.get("rawPath")}


def bad(event, context):
    """A result no front door can send, as ?mode= asks."""
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "notjson":
        def body():
            yield b"<html>this is not JSON"
        return body()
    if mode == "status":
        return {"statusCode": "two hundred", "body": "x"}
    if mode == "body":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if mode == "raise":
        raise RuntimeError("the function failed")
    return {"statusCode": 200, "body": "fine"}


def _token(event):
    return (event.get("authorizationToken") or (event.get("headers") or {}).get("X-Token")
            or (event.get("headers") or {}).get("x-token") or "")


def policy_authorizer(event, context):
    """An IAM-policy authorizer: token allow, deny, or unauthorized."""
    token = _token(event)
    if token == "unauthorized":
        raise Exception("Unauthorized")
    arn = event.get("methodArn") or event.get("routeArn")
    return {"principalId": "user-ann", "context": {"user": "ann", "level": 3},
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow" if token == "allow" else "Deny", "Resource": arn}]}}


def simple_authorizer(event, context):
    """An HTTP API simple-response authorizer."""
    return {"isAuthorized": event["identitySource"][0] == "allow", "context": {"user": "bob", "roles": ["x"]}}
