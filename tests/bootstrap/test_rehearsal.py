"""A SnapStart template's rehearsal (bootstrap.rehearsal) through its seams: a Runtime API client
over a connection it is given, and a stand-in runtime beside the real one."""

import os
import socket

from bootstrap import logs as logs_module
from bootstrap.client import Connection, RuntimeClient
from bootstrap.config import Config
from bootstrap.context import FunctionInfo
from bootstrap.rehearsal import rehearse
from bootstrap.runtime import InitialisedRuntime

ADDRESS = "127.0.0.1:9"  # never connected to: the rehearsal speaks over a socket pair


class ListSink:
    framed = False

    def __init__(self):
        self.records = []

    def log(self, msg, frame_type=None):
        self.records.append(msg)

    def log_error(self, lines):
        self.records.append(lines)


def make_runtime(handler, logs=None):
    config = Config(handler="app.handler", runtime_api=ADDRESS, function=FunctionInfo("fn"))
    logs = logs or logs_module.Logs("text", "", ListSink())
    return InitialisedRuntime(RuntimeClient(ADDRESS), config, logs, handler)


def test_a_client_speaks_over_the_connection_it_is_given():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        client = RuntimeClient(ADDRESS, connection=Connection(ADDRESS, sock=ours))
        theirs.sendall(b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: rid-1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
        invocation = client.next()
        request = theirs.recv(1 << 16)

    assert (invocation.request_id, invocation.body) == ("rid-1", b'{"a":1}')
    assert request.startswith(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")


def test_the_rehearsal_runs_neither_the_handler_nor_the_real_client(monkeypatch):
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    logs_module.set_invocation("", None)
    called = []
    runtime = make_runtime(lambda event, context: called.append(event))
    client, handler = runtime.client, runtime.handler

    assert rehearse(runtime) is True
    assert called == []
    assert (runtime.client, runtime.handler) == (client, handler)
    assert runtime.client.connection.sock is None  # never connected
    # The stand-in's invocation leaves no trace: no X-Ray trace id, no request id in the logs.
    assert "_X_AMZN_TRACE_ID" not in os.environ and logs_module.request_id == ""


def test_a_failing_rehearsal_says_so_once_and_leaves_the_runtime_as_it_was(capsys):
    class BrokenLogs:  # no context_log, no log_error: the stand-in's invocation fails
        pass

    runtime = make_runtime(lambda event, context: {}, logs=BrokenLogs())

    assert rehearse(runtime) is False
    err = capsys.readouterr().err
    assert err.count("lambdalet bootstrap: the SnapStart template's rehearsal failed (AttributeError") == 1
    assert runtime.client.connection.sock is None
