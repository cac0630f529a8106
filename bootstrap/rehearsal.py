"""A SnapStart template's rehearsal: the runtime's own side of a restore and an invocation, run in
the template before it parks, so that what each copy's first restore and invocation would do once
(the interpreter specialising its bytecode in place, caches filled lazily) is done in pages every
copy shares rather than in each copy.

It runs the same code a copy runs (bootstrap.client, bootstrap.runtime's invocation handling, the
event and result codecs), through the seams those take: a Runtime API client over a socket pair
answering canned replies, and a runtime whose handler does nothing, beside the real one. Neither the
function's handler nor its hooks run; of the real runtime only its result encoder is made (as its
first invocation would), and its client is left as it was.
"""

import os
import socket
import sys

from bootstrap import logs
from bootstrap.client import Connection, RuntimeClient
from bootstrap.context import FunctionInfo

# The Runtime API's answers to one restore and one invocation, as lambdalet's server gives them.
_RESTORED = b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n"
_NEXT = (b"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: 00000000-0000-0000-0000-000000000000\r\n"
         b"Lambda-Runtime-Deadline-Ms: 0\r\nLambda-Runtime-Invoked-Function-Arn: "
         b"arn:aws:lambda:us-east-1:123456789012:function:rehearsal\r\n"
         b"Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n"
         b"Content-Type: application/json\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
         b"Content-Length: 2\r\n\r\n{}")
_ACCEPTED = (b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
             b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n")
# Enough rounds for the interpreter to specialise what runs once per restore and invocation.
ROUNDS = 10


def rehearse(runtime, rounds=ROUNDS):
    """Rehearse `runtime`'s restore and invocation `rounds` times. Returns whether it went through;
    if not, says why on stderr, once (the copies then work the same, each with more memory of its
    own)."""
    ours, theirs = socket.socketpair()
    address = runtime.client.address
    client = RuntimeClient(address, runtime.client.user_agent, Connection(address, sock=ours))
    stand_in = type(runtime)(client, runtime.config, runtime.logs, _nothing)  # an InitialisedRuntime
    runtime.encoder  # noqa: B018 (made on first use: here, once, rather than in each copy)
    # What the stand-in's invocation sets, put back afterwards.
    trace_id, request_id, tenant_id = os.environ.get("_X_AMZN_TRACE_ID"), logs.request_id, logs.tenant_id
    try:
        for _ in range(rounds):
            theirs.sendall(_RESTORED + _NEXT + _ACCEPTED)
            FunctionInfo.from_environ(os.environ)  # what a copy does to take its identity
            client.restore_next()
            stand_in.handle(client.next())
            theirs.recv(1 << 16)
        return True
    except Exception as exc:
        sys.stderr.write(f"lambdalet bootstrap: the SnapStart template's rehearsal failed ({exc!r}); "
                         f"its copies work without it\n")
        return False
    finally:
        client.connection.close()
        theirs.close()
        if trace_id is None:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        else:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        logs.set_invocation(request_id, tenant_id)


def _nothing(event, context):
    return {}
