"""Benchmark (not a test): a moto `invoke` through lambdalet (runtime_api/moto/), its first call and
warm, with and without SnapStart, against lambdalet's own `invoke` of the same function.

    python -m benchmarks.moto_invoke [--rounds 7] [--warm 50]

In one process, under moto's in-process `mock_aws` with the integration installed: every round
creates, per variant, a new function (its package differs by a comment, so it is extracted, its
runtime started and, with SnapStart, its template made, as for a function a test has just created)
and times boto3's first `invoke`, then `--warm` more, then one made while the first environment is
held in its handler (so it needs a second environment: started anew, or restored). The variants alternate their order round by
round; the medians over rounds are reported. The peer, measured in the same run: the same handler
invoked by `LambdaletThread.invoke` directly (no boto3, no moto), so the ratio is what moto and
boto3 add around lambdalet. moto's own path runs each invocation in a new Docker container
(`docker run` of a `mlupin/docker-lambda` image, pulled at first use); there is no Docker engine
here, so that path cannot be measured: moto answers "error running docker".
Results: benchmarks/results/moto_invoke.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import socket
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from . import common

# `hold`: the handler stays in the invocation until the benchmark, listening on that port, lets it go
# (so that the next invocation needs a second environment).
HANDLER = """# round {round} {variant}
import socket


def handler(event, context):
    if "hold" in event:
        with socket.create_connection(("127.0.0.1", event["hold"])) as held:
            held.recv(1)
    return {{"ok": True, "echo": event}}
"""
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"


def package(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        info = zipfile.ZipInfo("app.py")
        info.external_attr = 0o100644 << 16
        bundle.writestr(info, source)
    return buffer.getvalue()


def timed(call) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def second_environment(invoke) -> float:
    """The latency of an invocation made while the function's one environment is busy: lambdalet
    starts (or, with SnapStart, restores) a second one."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        holder = threading.Thread(target=invoke, args=({"hold": listener.getsockname()[1]},))
        holder.start()
        held, _ = listener.accept()  # the first environment is in its handler
        try:
            return timed(lambda: invoke({"n": 1}))
        finally:
            held.sendall(b"x")
            held.close()
            holder.join()


def moto_round(client, role: str, round_no: int, variant: str, warm: int) -> tuple[float, list[float], float]:
    name = f"bench-{variant}-{round_no}"
    settings = {"SnapStart": {"ApplyOn": "PublishedVersions"}} if variant == "snapstart" else {}
    client.create_function(FunctionName=name, Runtime=PYTHON, Role=role, Handler="app.handler",
                           Code={"ZipFile": package(HANDLER.format(round=round_no, variant=variant))}, **settings)

    def invoke(event: dict) -> None:
        response = client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
        assert "FunctionError" not in response, response["Payload"].read()
        response["Payload"].read()

    first = timed(lambda: invoke({"n": 1}))
    return first, [timed(lambda: invoke({"n": 1})) for _ in range(warm)], second_environment(invoke)


def direct_round(root: Path, round_no: int, warm: int) -> tuple[float, list[float], float]:
    from runtime_api import FunctionConfig, LambdaletThread, ServerConfig

    code = root / f"direct-{round_no}"
    code.mkdir()
    (code / "app.py").write_text(HANDLER.format(round=round_no, variant="direct"))
    config = ServerConfig(port=0, function=[FunctionConfig(name="direct", code=str(code), handler="app.handler",
                                                           runtime_id=PYTHON)])
    with LambdaletThread(config, sink=_Quiet()) as lambdalet:
        def invoke(event: dict) -> None:
            assert lambdalet.invoke("direct", json.dumps(event).encode()).function_error is None

        first = timed(lambda: invoke({"n": 1}))
        return first, [timed(lambda: invoke({"n": 1})) for _ in range(warm)], second_environment(invoke)


class _Quiet:
    """Where the functions' log lines go: not among the results (the same for every variant)."""

    def write(self, data: bytes) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warm", type=int, default=50)
    args = parser.parse_args(argv)

    import boto3
    from moto import mock_aws

    import runtime_api.moto

    os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    variants = ["plain", "snapstart", "direct"]
    firsts: dict[str, list[float]] = {v: [] for v in variants}
    warms: dict[str, list[float]] = {v: [] for v in variants}  # each round's p50
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["LAMBDALET_CACHE"] = os.environ.get("LAMBDALET_CACHE") or str(_runtime_cache())
        os.environ["XDG_CACHE_HOME"] = scratch  # the packages extracted here, not in the user's cache
        runtime_api.moto.install(sink=_Quiet())  # the functions' log lines, as the peer's: not printed
        try:
            with mock_aws():
                role = boto3.client("iam").create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
                client = boto3.client("lambda")
                for round_no in range(args.rounds):
                    order = variants if round_no % 2 == 0 else list(reversed(variants))
                    for variant in order:
                        if variant == "direct":
                            first, warm, second = direct_round(Path(scratch), round_no, args.warm)
                        else:
                            first, warm, second = moto_round(client, role, round_no, variant, args.warm)
                        firsts[variant].append(first)
                        warms[variant].append(common.median(warm))
                        seconds[variant].append(second)
                    print(f"round {round_no + 1}/{args.rounds}: " + ", ".join(
                        f"{v} first {firsts[v][-1]:.1f} ms warm {warms[v][-1]:.2f} ms second {seconds[v][-1]:.1f} ms"
                        for v in variants), flush=True)
        finally:
            runtime_api.moto.uninstall()

    summary = {v: {"first_ms": common.median(firsts[v]), "warm_p50_ms": common.median(warms[v]),
                   "second_environment_ms": common.median(seconds[v])} for v in variants}
    revision, dirty = common.git_revision()
    data = {"recorded": common.utc_now(), "revision": revision, "dirty": dirty, "machine": common.machine_info(),
            "moto": common.package_version("moto"), "boto3": common.package_version("boto3"),
            "rounds": args.rounds, "warm": args.warm, "summary": summary, "firsts": firsts, "warms": warms, "seconds": seconds,
            "command": common.command_line("benchmarks.moto_invoke", argv or sys.argv[1:])}
    labels = {"plain": "moto `invoke` through lambdalet", "snapstart": "the same, SnapStart configured",
              "direct": "peer: `LambdaletThread.invoke`, no moto"}
    rows = [[labels[v], f"{summary[v]['first_ms']:.1f} ms", f"{summary[v]['warm_p50_ms']:.2f} ms",
             f"{summary[v]['second_environment_ms']:.1f} ms"] for v in variants]
    rows.append(["moto's own path (Docker)", "cannot run here", "cannot run here", "cannot run here"])
    machine = data["machine"]
    markdown = "\n".join([
        "# moto's Lambda `invoke` through lambdalet",
        "",
        f"Recorded {data['recorded']} at commit {revision} on {machine['nproc']} cores ({machine['cpu_model']}), "
        f"Python {machine['python']}, moto {data['moto']}: {args.rounds} interleaved rounds, each a new function per "
        f"variant, its first boto3 `invoke` and {args.warm} warm ones under `mock_aws`; medians over rounds; "
        f"`{data['command']}`.",
        "",
        common.markdown_table(["invocation", "first call", "warm p50", "a second environment"], rows),
        "",
        f"Warm, moto and boto3 add {summary['plain']['warm_p50_ms'] / summary['direct']['warm_p50_ms']:.1f}x "
        "lambdalet's own invoke (boto3 builds, signs and parses the request; moto dispatches it in-process). "
        "A first call extracts the package, starts the function's runtime and runs its init; with SnapStart "
        "it also makes the template every later environment of the function is restored from, so a first call "
        "costs more, and each new environment after it less: \"a second environment\" is an invocation made while "
        "the first environment is busy in its handler.",
        "",
        "moto's own path (moto's documentation on `invoke`: the function runs in a Docker container, "
        "from a `mlupin/docker-lambda` image pulled at first use) needs a Docker engine; this machine has none, "
        "and moto answers the invocation with \"error running docker\".",
    ])
    json_path, md_path = common.write_results("moto_invoke", data, markdown)
    print(markdown)
    print(f"\nwritten: {json_path}, {md_path}")
    return 0


def _runtime_cache() -> Path:
    from sandbox import runtime_cache

    return runtime_cache.cache_dir()


if __name__ == "__main__":
    sys.exit(main())
