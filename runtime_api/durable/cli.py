"""`lambdalet durable`: a running server's durable executions, through its Lambda API (as the AWS
CLI's `aws lambda ... --endpoint-url` would reach them).

    lambdalet durable list FUNCTION [--status RUNNING] [--json]
    lambdalet durable get ARN [--json]
    lambdalet durable history ARN [--json]
    lambdalet durable callback succeed|fail|heartbeat CALLBACK_ID [RESULT | --error-type T --error-message M]
    lambdalet durable stop ARN [--error-type T --error-message M]

The server is found at --endpoint (default http://127.0.0.1:8080, serve's own default): callbacks
and stops change a running execution, so they go to the server that runs it, never to its store.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import sys
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


def add_durable_parser(commands) -> None:
    parser = commands.add_parser(
        "durable", help="list durable executions, read their history, complete callbacks, stop executions",
        description="The durable executions of a running lambdalet serve, through its Lambda API.")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"the server (default {DEFAULT_ENDPOINT})")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="a function's executions, oldest first")
    listing.add_argument("function")
    listing.add_argument("--status", action="append", default=[],
                         help="RUNNING, SUCCEEDED, FAILED, TIMED_OUT or STOPPED (repeatable)")
    actions.add_parser("get", help="one execution: status, input, result or error").add_argument("arn")
    actions.add_parser("history", help="an execution's events, in order").add_argument("arn")
    callback = actions.add_parser("callback", help="complete a callback an execution waits for")
    callback.add_argument("outcome", choices=["succeed", "fail", "heartbeat"])
    callback.add_argument("callback_id")
    callback.add_argument("result", nargs="?", default="", help="succeed: the result, as the handler receives it")
    stop = actions.add_parser("stop", help="stop a running execution")
    stop.add_argument("arn")
    for needs_error in (callback, stop):
        needs_error.add_argument("--error-type", help="fail, stop: the error's type")
        needs_error.add_argument("--error-message", help="fail, stop: the error's message")


class ApiError(Exception):
    pass


def call(endpoint: str, method: str, path: str, body: bytes = b"", query: dict | None = None) -> dict:
    where = urlsplit(endpoint)
    connection = http.client.HTTPConnection(where.hostname, where.port or 80, timeout=30)
    try:
        connection.request(method, path + (f"?{urlencode(query, doseq=True)}" if query else ""), body=body,
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        data = answer.read()
    except OSError as exc:
        raise ApiError(f"cannot reach lambdalet at {endpoint}: {exc.strerror or exc}") from None
    finally:
        connection.close()
    if answer.status >= 300:
        try:
            message = json.loads(data).get("message", "")
        except ValueError:
            message = data.decode(errors="replace")
        raise ApiError(f"{answer.getheader('x-amzn-ErrorType') or answer.status}: {message}")
    return json.loads(data) if data.strip() else {}


def durable(args: argparse.Namespace) -> int:
    try:
        answer = _run(args)
    except ApiError as exc:
        print(f"lambdalet: {exc}", file=sys.stderr)
        return 1
    if args.json or args.action == "get":
        print(json.dumps(answer, indent=2))
    elif args.action == "list":
        for execution in answer["DurableExecutions"]:
            print(f"{_when(execution['StartTimestamp'])}  {execution['Status']:<9}  {execution['DurableExecutionArn']}")
    elif args.action == "history":
        for event in answer["Events"]:
            name = "" if event["EventType"].startswith("Execution") else event.get("Name") or ""
            print(f"{event['EventId']:>4}  {_when(event['EventTimestamp'])}  {event['EventType']:<24}  {name}")
    return 0


def _run(args: argparse.Namespace) -> dict:
    endpoint = args.endpoint
    executions = "/2025-12-01/durable-executions/"
    if args.action == "list":
        query = {"Statuses": args.status} if args.status else {}
        pages, answer = [], {"NextMarker": None}
        while True:
            if answer.get("NextMarker"):
                query["Marker"] = answer["NextMarker"]
            answer = call(endpoint, "GET", f"/2025-12-01/functions/{quote(args.function, safe='')}/durable-executions",
                          query=query)
            pages += answer["DurableExecutions"]
            if not answer.get("NextMarker"):
                return {"DurableExecutions": pages}
    if args.action == "get":
        return call(endpoint, "GET", executions + quote(args.arn, safe=""))
    if args.action == "history":
        events, query = [], {}
        while True:
            answer = call(endpoint, "GET", executions + quote(args.arn, safe="") + "/history", query=query)
            events += answer["Events"]
            if not answer.get("NextMarker"):
                return {"Events": events}
            query["Marker"] = answer["NextMarker"]
    error = {key: value for key, value in (("ErrorType", args.error_type), ("ErrorMessage", args.error_message))
             if value}
    if args.action == "stop":
        return call(endpoint, "POST", executions + quote(args.arn, safe="") + "/stop", json.dumps(error).encode())
    path = f"/2025-12-01/durable-execution-callbacks/{quote(args.callback_id, safe='')}/{args.outcome}"
    body = args.result.encode() if args.outcome == "succeed" else json.dumps(error).encode() if args.outcome == "fail" \
        else b""
    return call(endpoint, "POST", path, body)


def _when(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
