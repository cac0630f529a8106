"""Benchmark (not a test): our bootstrap vs awslambdaric under the real RIE, side by side in one run.

    python -m benchmarks.startup [--samples 15] [--warm 300]

Measures, for each runtime, interleaved sample by sample:
  * exec -> first `GET /runtime/invocation/next`: a wrapper records the time just before it execs
    the runtime; a pass-through proxy in front of RIE's Runtime API records when the first GET
    arrives;
  * the cold invoke as the caller sees it (invoke sent -> response read; RIE starts the runtime
    lazily on that invoke);
  * warm per-invocation overhead at the runtime, from the proxy's timestamps on one connection:
    `next` answered -> response POST begins, and POST answered (202) -> next `GET next` sent;
  * warm invoke latency as the caller sees it (through the proxy);
  * `--inprocess`: the Python part of one invocation with no network (event in -> response bytes
    handed to a stub client), ours vs awslambdaric's `handle_event_request`.

Every runtime runs in a clean environment (env -i) with `python -S` and site-packages on PYTHONPATH,
so `.pth` files of the host machine do not weigh on either. The trivial handler returns its event.
"""

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from .common import PassThroughProxy, free_port, wait_for_port
from .realparts import rie_binary

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

PY = sys.executable
SITE = sysconfig.get_paths()["purelib"]
ENTRY_C = "import sys; from bootstrap.__main__ import main; sys.exit(main())"
RUNTIMES = {
    "awslambdaric (-m)": [PY, "-S", "-m", "awslambdaric"],
    "bootstrap (-m)": [PY, "-S", "-m", "bootstrap"],
    "bootstrap (-c, as the shell bootstrap)": [PY, "-S", "-c", ENTRY_C],
}
INVOKE = "/2015-03-31/functions/function/invocations"
NEXT = b"GET /2018-06-01/runtime/invocation/next"


def one_sample(argv, task, warm):
    invoke_port, rapi_port = free_port(), free_port()
    proxy = PassThroughProxy(("127.0.0.1", rapi_port))
    stamp = task / "exec-time"
    wrapper = task / "wrapper.sh"
    # The timestamp is taken by Python just before the exec (bash's $EPOCHREALTIME is not in sh).
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export AWS_LAMBDA_RUNTIME_API=127.0.0.1:{proxy.port}\n"
        f"exec {PY} -S -c 'import os, sys, time; open(\"{stamp}\", \"w\").write(repr(time.time()));"
        f" os.execv(sys.argv[1], sys.argv[1:])' \"$@\"\n")
    wrapper.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), "LANG": "C.UTF-8",
           "PYTHONPATH": f"{REPO}:{SITE}", "LAMBDA_TASK_ROOT": str(task)}
    rie = subprocess.Popen([str(rie_binary()), "--runtime-interface-emulator-address",
                            f"127.0.0.1:{invoke_port}", "--runtime-api-address",
                            f"127.0.0.1:{rapi_port}", str(wrapper)] + argv + ["app.handler"],
                           cwd=task, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        wait_for_port(invoke_port, rie)
        conn = http.client.HTTPConnection("127.0.0.1", invoke_port)
        t0 = time.time()
        conn.request("POST", INVOKE, body=b'{"hello": "world"}')
        body = conn.getresponse().read()
        cold = time.time() - t0
        assert body == b'{"hello": "world"}', body
        first_next_at = next(t for t, direction, _, data in proxy.recorded()
                             if direction == "up" and data.startswith(NEXT))
        exec_to_next = first_next_at - float(stamp.read_text())
        latencies = []
        for _ in range(warm):
            t = time.perf_counter()
            conn.request("POST", INVOKE, body=b'{"hello": "world"}')
            conn.getresponse().read()
            latencies.append(time.perf_counter() - t)
        conn.close()
        return exec_to_next, cold, latencies, runtime_side(proxy.recorded())
    finally:
        rie.send_signal(signal.SIGTERM)
        rie.wait()
        proxy.close()


def runtime_side(events):
    """(next answered -> POST starts, POST answered -> GET next sent) per warm invocation."""
    ev = sorted(events)
    think, turn = [], []
    last_next_answer = last_post_answer = None
    pending = None
    for t, direction, _, data in ev:
        if direction == "up":
            if data.startswith(b"POST ") and b"/response" in data.split(b"\r\n", 1)[0]:
                if last_next_answer is not None:
                    think.append(t - last_next_answer)
                pending = "post"
            elif data.startswith(NEXT):
                if last_post_answer is not None:
                    turn.append(t - last_post_answer)
                    last_post_answer = None
                pending = "next"
        else:
            if pending == "next":
                last_next_answer = t
            elif pending == "post":
                last_post_answer = t
            pending = None
    return think[1:], turn[1:]  # the first is the cold one


def median_ms(values):
    return statistics.median(values) * 1000 if values else float("nan")


def in_process(body, rounds=7, calls=5000):
    """Microseconds per invocation, Python only (stub clients, a handler echoing the JSON event)."""
    import timeit

    from awslambdaric import bootstrap as ric
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    from bootstrap import logs
    from bootstrap.client import Invocation
    from bootstrap.config import Config
    from bootstrap.runtime import InitialisedRuntime

    def handler(event, context):
        return event

    class OurStub:
        def post_response(self, *args):
            pass

    headers = {"lambda-runtime-aws-request-id": "rid", "lambda-runtime-deadline-ms": "4102444800000",
               "lambda-runtime-invoked-function-arn": "arn", "content-type": "application/json"}
    ours = InitialisedRuntime(OurStub(), Config("app.handler", "127.0.0.1:1"),
                              logs.Logs(logs.TEXT, "", logs.StdoutSink()), handler)
    invocation = Invocation(headers, body)

    class RicStub(LambdaRuntimeClient):
        def __init__(self):
            pass

        def post_invocation_result(self, *args):
            pass

    ric_client = RicStub()
    sink = ric.StandardLogSink()

    def theirs():
        ric.handle_event_request(ric_client, handler, "rid", body, "application/json", None, None,
                                 "arn", 4102444800000, None, sink, None)

    results = {}
    for name, fn in (("awslambdaric", theirs), ("bootstrap", lambda: ours.handle(invocation))):
        best = min(timeit.repeat(fn, number=calls, repeat=rounds))
        results[name] = best / calls * 1e6
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--inprocess", action="store_true")
    args = parser.parse_args()
    if args.inprocess:
        import json
        small = b'{"hello": "world", "n": [1, 2, 3]}'
        large = json.dumps({"items": [{"id": i, "name": f"item-{i}", "price": i * 1.5,
                                       "tags": ["a", "b"], "ok": True} for i in range(1000)]}).encode()
        for label, body, calls in (("small event", small, 5000), (f"{len(large)} B event", large, 50)):
            for name, us in in_process(body, calls=calls).items():
                print(f"{label:16} {name:14} {us:9.1f} us per invocation (in process, best of 7)")
        return
    results = {name: {"exec": [], "cold": [], "warm": [], "think": [], "turn": []}
               for name in RUNTIMES}
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp)
        (task / "app.py").write_text("def handler(event, context):\n    return event\n")
        for i in range(args.samples):
            for name, argv in RUNTIMES.items():  # interleaved
                exec_to_next, cold, warm, (think, turn) = one_sample(
                    argv, task, args.warm if i == 0 else max(args.warm // 10, 10))
                r = results[name]
                r["exec"].append(exec_to_next)
                r["cold"].append(cold)
                r["warm"] += warm
                r["think"] += think
                r["turn"] += turn
        shutil.rmtree(task / "__pycache__", ignore_errors=True)
    print(f"python {sys.version.split()[0]}, {args.samples} cold samples per runtime, medians (ms)")
    print(f"{'runtime':42} {'exec->next':>10} {'cold inv':>9} {'warm inv':>9} "
          f"{'next->post':>10} {'202->next':>10}")
    for name, r in results.items():
        print(f"{name:42} {median_ms(r['exec']):10.2f} {median_ms(r['cold']):9.2f} "
              f"{median_ms(r['warm']):9.3f} {median_ms(r['think']):10.3f} {median_ms(r['turn']):10.3f}")


if __name__ == "__main__":
    main()
