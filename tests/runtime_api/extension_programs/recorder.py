"""An external extension written for the tests (its #! line is written by the test): it registers
under its file name, says each event it gets on its output (`<name> event <json>`), and behaves as
EXT_MODE says:

  normal         SHUTDOWN ends it
  gate           at each INVOKE, waits at the test's Gate (GATE_PORT) before asking again; with
                 EXT_GATE_SHUTDOWN set, at SHUTDOWN too, and then says `<name> finished shutdown`
  crash          exits with status 3 as it gets INVOKE
  exit-error     posts exit/error (Extension.Failed) as it gets INVOKE, then exits
  init-error     posts init/error (Extension.ConfigInvalid) instead of asking for its first event
  no-register    exits with status 2 before it registers
  never-register waits forever without registering
  slow-shutdown  ignores SIGTERM, and at SHUTDOWN waits forever

EXT_SUBSCRIBE: a Telemetry API subscription to make as it starts (`{"api": "telemetry"|"logs",
"body": {...}}`); the answer is said as `<name> subscribed <status> <body>`. EXT_SUBSCRIBE_<NAME>
(its name in capitals, `-` as `_`), if set, is its own instead.
"""

import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}"
NAME = os.path.basename(sys.argv[0])
MODE = os.environ.get("EXT_MODE", "normal")


def say(*words):
    print(NAME, *words, flush=True)


def call(method, path, body=None, headers=()):
    request = urllib.request.Request(API + path, data=body, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_at_gate(what):
    with socket.create_connection(("127.0.0.1", int(os.environ["GATE_PORT"]))) as gate:
        gate.sendall(f"{NAME} {what}\n".encode())
        gate.recv(64)


if MODE == "no-register":
    sys.exit(2)
if MODE == "never-register":
    while True:
        time.sleep(3600)
if MODE == "slow-shutdown":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
events = os.environ.get("EXT_EVENTS", "INVOKE,SHUTDOWN").split(",")
status, headers, body = call("POST", "/2020-01-01/extension/register", json.dumps({"events": events}).encode(),
                             {"Lambda-Extension-Name": NAME, "Lambda-Extension-Accept-Feature": "accountId"})
identifier = headers.get("Lambda-Extension-Identifier")
say("registered", status, body.decode().strip())
ident = {"Lambda-Extension-Identifier": identifier}
SUBSCRIBE = os.environ.get("EXT_SUBSCRIBE_" + NAME.upper().replace("-", "_")) or os.environ.get("EXT_SUBSCRIBE")
if SUBSCRIBE:
    subscription = json.loads(SUBSCRIBE)
    path = "/2022-07-01/telemetry" if subscription["api"] == "telemetry" else "/2020-08-15/logs"
    status, _, body = call("PUT", path, json.dumps(subscription["body"]).encode(), ident)
    say("subscribed", status, body.decode().strip())
if MODE == "init-error":
    call("POST", "/2020-01-01/extension/init/error", b'{"errorMessage":"no config","errorType":"Extension.ConfigInvalid"}',
         {**ident, "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"})
    sys.exit(1)
while True:
    status, _, body = call("GET", "/2020-01-01/extension/event/next", headers=ident)
    event = json.loads(body)
    say("event", json.dumps(event, sort_keys=True))
    if event["eventType"] == "SHUTDOWN":
        if MODE == "gate" and os.environ.get("EXT_GATE_SHUTDOWN"):
            wait_at_gate("SHUTDOWN")
            say("finished", "shutdown")
        if MODE == "slow-shutdown":
            while True:
                time.sleep(3600)
        sys.exit(0)
    if MODE == "crash":
        sys.exit(3)
    if MODE == "exit-error":
        call("POST", "/2020-01-01/extension/exit/error", b"{}",
             {**ident, "Lambda-Extension-Function-Error-Type": "Extension.Failed"})
        sys.exit(1)
    if MODE == "gate":
        wait_at_gate(event["requestId"])
