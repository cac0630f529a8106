"""Durable functions: what a checkpoint costs a handler, and what 100 checkpointed steps cost an
execution over the same code undecorated.

    python -m benchmarks.durable [--rounds 400] [--runs 15]

* **Checkpoint round trip**, from inside a durable handler run by `lambdalet serve`: boto3's
  `checkpoint_durable_execution` (one step's START and SUCCEED, so each call writes the execution
  to the store before it answers), timed call by call, interleaved with a peer on the same
  client and connection: `invoke` with InvocationType DryRun, a request lambdalet answers without
  running anything. The ratio says what a checkpoint adds to a no-op round trip.
* **100 steps**: one execution of a handler written with AWS's SDK, 100 `context.step` calls,
  against the same 100 function calls in a handler without the SDK, each invoked synchronously
  through the Invoke API, runs interleaved, medians. For reference, the same durable handler under
  AWS's in-process local runner (DurableFunctionTestRunner, no HTTP, no store).

Results go to benchmarks/results/durable.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from .common import (PYTHON, Server, free_port, git_revision, machine_info, markdown_table, percentile, utc_now,
                     write_results)

HANDLERS = '''
import json, os, time
import boto3
from aws_durable_execution_sdk_python import DurableContext, durable_execution

def probe(event, context):
    """Not the SDK: the durable input's token, then checkpoints one after another, timed."""
    lam = boto3.client("lambda")
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    rounds = json.loads(event["InitialExecutionState"]["Operations"][0]["ExecutionDetails"]["InputPayload"])["rounds"]
    checkpoint, dry_run = [], []
    for number in range(rounds):
        started = time.perf_counter_ns()
        answer = lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token, Updates=[
            {"Id": f"s{number}", "Type": "STEP", "Action": "START", "Name": "timed"},
            {"Id": f"s{number}", "Type": "STEP", "Action": "SUCCEED", "Payload": str(number)}])
        checkpoint.append(time.perf_counter_ns() - started)
        token = answer["CheckpointToken"]
        started = time.perf_counter_ns()
        lam.invoke(FunctionName="noop", InvocationType="DryRun")
        dry_run.append(time.perf_counter_ns() - started)
    return {"Status": "SUCCEEDED", "Result": json.dumps({"checkpoint_ns": checkpoint, "dry_run_ns": dry_run})}

def noop(event, context):
    return None

def work(number):
    return number * 2

@durable_execution
def hundred(event, context: DurableContext):
    return sum(context.step(lambda _, n=n: work(n), name=f"step-{n}") for n in range(100))

def hundred_plain(event, context):
    return sum(work(n) for n in range(100))
'''


def config(work: Path, port: int) -> Path:
    code = work / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLERS)
    runtime = lambda handler: [PYTHON, "-m", "awslambdaric", handler]  # noqa: E731
    functions = [("probe", True), ("noop", False), ("hundred", True), ("hundred_plain", False)]
    text = "".join(textwrap.dedent(f"""
        [[function]]
        name = "{name}"
        code = {json.dumps(str(code))}
        handler = "app.{name}"
        runtime = {json.dumps(runtime(f"app.{name}"))}
        isolation = "none"
        timeout = 300
        concurrency = 1
        """) + ("durable = { execution_timeout = 3600 }\n" if durable else "") for name, durable in functions)
    path = work / "lambdalet.toml"
    path.write_text(text)
    return path


def invoke(port: int, name: str, payload: bytes = b"{}") -> tuple[float, bytes]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        started = time.perf_counter()
        connection.request("POST", f"/2015-03-31/functions/{name}/invocations", body=payload)
        answer = connection.getresponse()
        body = answer.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if answer.status != 200 or answer.getheader("X-Amz-Function-Error"):
        raise RuntimeError(f"{name}: {answer.status} {body[:500]!r}")
    return elapsed, body


def local_runner_seconds(runs: int, work: Path) -> float:
    sys.path.insert(0, str(work / "code"))
    try:
        import app
        from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

        times = []
        for _ in range(runs):
            with DurableFunctionTestRunner(handler=app.hundred) as runner:
                started = time.perf_counter()
                result = runner.run(input="{}", execution_timeout=300)
                times.append(time.perf_counter() - started)
            assert result.result == "9900", result
        return statistics.median(times)
    finally:
        sys.path.remove(str(work / "code"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.durable", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400, help="checkpoints (and DryRun invokes) timed")
    parser.add_argument("--runs", type=int, default=15, help="runs of each 100-step handler")
    args = parser.parse_args(argv)
    results: dict = {"machine": machine_info(), "when": utc_now(), "commit": git_revision()[0],
                     "rounds": args.rounds, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="lambdalet-durable-") as scratch:
        work = Path(scratch)
        port = free_port()
        argv = [PYTHON, "-m", "runtime_api.cli", "serve", "--config", str(config(work, port)), "--port", str(port),
                "--state-dir", str(work / "state")]
        with Server("durable", argv, Path(__file__).resolve().parent.parent, port, log_dir=work):
            print("checkpoint round trips, from a handler", file=sys.stderr)
            _, body = invoke(port, "probe", json.dumps({"rounds": args.rounds}).encode())
            timings = json.loads(body)
            checkpoint = sorted(ns / 1e6 for ns in timings["checkpoint_ns"])
            dry_run = sorted(ns / 1e6 for ns in timings["dry_run_ns"])
            results["checkpoint"] = {
                "p50_ms": percentile(checkpoint, 50), "p90_ms": percentile(checkpoint, 90),
                "p99_ms": percentile(checkpoint, 99), "dry_run_p50_ms": percentile(dry_run, 50),
                "ratio_p50": percentile(checkpoint, 50) / percentile(dry_run, 50)}
            print("100 steps: durable vs undecorated, interleaved", file=sys.stderr)
            invoke(port, "hundred")  # each function's environment warm before the timed runs
            invoke(port, "hundred_plain")
            durable, plain = [], []
            for _ in range(args.runs):
                durable.append(invoke(port, "hundred")[0])
                plain.append(invoke(port, "hundred_plain")[0])
        print("100 steps under AWS's local runner", file=sys.stderr)
        local = local_runner_seconds(max(3, args.runs // 3), work)
    results["hundred"] = {"durable_ms": statistics.median(durable) * 1000, "plain_ms": statistics.median(plain) * 1000,
                          "local_runner_ms": local * 1000}
    hundred = results["hundred"]
    hundred["overhead_ms"] = hundred["durable_ms"] - hundred["plain_ms"]
    hundred["overhead_per_step_ms"] = hundred["overhead_ms"] / 100
    write_results("durable", results, render(results))
    print(render(results))
    return 0


def render(data: dict) -> str:
    c, h = data["checkpoint"], data["hundred"]
    return "\n".join([
        "# Durable functions: a checkpoint's round trip, and 100 steps",
        "",
        f"Measured {data['when']} at commit {data.get('commit', '?')} on {data['machine']['cpu_model'] or 'this machine'} "
        f"({data['machine']['nproc']} cores, load {data['machine']['loadavg'][0]:.2f}); `python -m benchmarks.durable`. "
        "The store: SQLite in WAL mode with synchronous=FULL, each checkpoint committed before its answer.",
        "",
        f"Checkpoint round trip from a handler (boto3 `checkpoint_durable_execution`, {data['rounds']} in a row, "
        "each interleaved with a DryRun `invoke` on the same client):",
        "",
        markdown_table(["", "p50", "p90", "p99"], [
            ["CheckpointDurableExecution", f"{c['p50_ms']:.2f} ms", f"{c['p90_ms']:.2f} ms", f"{c['p99_ms']:.2f} ms"],
            ["Invoke, DryRun (peer)", f"{c['dry_run_p50_ms']:.2f} ms", "", ""]]),
        "",
        f"A checkpoint costs {c['ratio_p50']:.2f}× a no-op round trip on the same connection (target: p50 ≤ 1 ms).",
        "",
        f"One execution of 100 `context.step` calls, invoked synchronously (medians of {data['runs']} interleaved runs, "
        "warm environments):",
        "",
        markdown_table(["handler", "median"], [
            ["100 steps with AWS's SDK, run by lambdalet", f"{h['durable_ms']:.1f} ms"],
            ["the same 100 calls, no SDK", f"{h['plain_ms']:.1f} ms"],
            ["100 steps with AWS's SDK, AWS's in-process local runner (reference)", f"{h['local_runner_ms']:.1f} ms"]]),
        "",
        f"The SDK and its checkpoints add {h['overhead_ms']:.1f} ms to the execution, {h['overhead_per_step_ms']:.2f} ms "
        "a step.",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
