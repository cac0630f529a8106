"""Benchmark (not a test): a moto `invoke` through lambdalet (runtime_api/moto/), its first call and
warm, with and without SnapStart, against lambdalet's own `invoke` of the same function.

    python -m benchmarks.moto_invoke [--rounds 7] [--warm 50]

In one process, under moto's in-process `mock_aws` with the integration installed: every round
creates, per variant, a new function (its package differs by a comment, so it is extracted, its
runtime started and, with SnapStart, its template made, as for a function a test has just created)
and times boto3's first `invoke`, then `--warm` more. The variants alternate their order round by
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
import tempfile
import time
import zipfile
from pathlib import Path

from . import common

HANDLER = "# round {round} {variant}\nimport json\n\ndef handler(event, context):\n    return {{'ok': True, 'echo': event}}\n"
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


def moto_round(client, role: str, round_no: int, variant: str, warm: int) -> tuple[float, list[float]]:
    name = f"bench-{variant}-{round_no}"
    settings = {"SnapStart": {"ApplyOn": "PublishedVersions"}} if variant == "snapstart" else {}
    client.create_function(FunctionName=name, Runtime=PYTHON, Role=role, Handler="app.handler",
                           Code={"ZipFile": package(HANDLER.format(round=round_no, variant=variant))}, **settings)

    def call() -> None:
        response = client.invoke(FunctionName=name, Payload=b'{"n": 1}')
        assert "FunctionError" not in response, response["Payload"].read()
        response["Payload"].read()

    first = timed(call)
    return first, [timed(call) for _ in range(warm)]


def direct_round(root: Path, round_no: int, warm: int) -> tuple[float, list[float]]:
    from runtime_api import FunctionConfig, LambdaletThread, ServerConfig

    code = root / f"direct-{round_no}"
    code.mkdir()
    (code / "app.py").write_text(HANDLER.format(round=round_no, variant="direct"))
    config = ServerConfig(port=0, function=[FunctionConfig(name="direct", code=str(code), handler="app.handler",
                                                           runtime_id=PYTHON)])
    with LambdaletThread(config, sink=_Quiet()) as lambdalet:
        def call() -> None:
            assert lambdalet.invoke("direct", b'{"n": 1}').function_error is None

        first = timed(call)
        return first, [timed(call) for _ in range(warm)]


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
                            first, warm = direct_round(Path(scratch), round_no, args.warm)
                        else:
                            first, warm = moto_round(client, role, round_no, variant, args.warm)
                        firsts[variant].append(first)
                        warms[variant].append(common.median(warm))
                    print(f"round {round_no + 1}/{args.rounds}: " + ", ".join(
                        f"{v} first {firsts[v][-1]:.1f} ms warm {warms[v][-1]:.2f} ms" for v in variants), flush=True)
        finally:
            runtime_api.moto.uninstall()

    summary = {v: {"first_ms": common.median(firsts[v]), "warm_p50_ms": common.median(warms[v])} for v in variants}
    revision, dirty = common.git_revision()
    data = {"recorded": common.utc_now(), "revision": revision, "dirty": dirty, "machine": common.machine_info(),
            "moto": common.package_version("moto"), "boto3": common.package_version("boto3"),
            "rounds": args.rounds, "warm": args.warm, "summary": summary, "firsts": firsts, "warms": warms,
            "command": common.command_line("benchmarks.moto_invoke", argv or sys.argv[1:])}
    rows = [
        ["moto `invoke` through lambdalet", f"{summary['plain']['first_ms']:.1f} ms",
         f"{summary['plain']['warm_p50_ms']:.2f} ms"],
        ["the same, SnapStart configured", f"{summary['snapstart']['first_ms']:.1f} ms",
         f"{summary['snapstart']['warm_p50_ms']:.2f} ms"],
        ["peer: `LambdaletThread.invoke`, no moto", f"{summary['direct']['first_ms']:.1f} ms",
         f"{summary['direct']['warm_p50_ms']:.2f} ms"],
        ["moto's own path (Docker)", "cannot run here", "cannot run here"],
    ]
    machine = data["machine"]
    markdown = "\n".join([
        "# moto's Lambda `invoke` through lambdalet",
        "",
        f"Recorded {data['recorded']} at commit {revision} on {machine['nproc']} cores ({machine['cpu_model']}), "
        f"Python {machine['python']}, moto {data['moto']}: {args.rounds} interleaved rounds, each a new function per "
        f"variant, its first boto3 `invoke` and {args.warm} warm ones under `mock_aws`; medians over rounds; "
        f"`{data['command']}`.",
        "",
        common.markdown_table(["invocation", "first call", "warm p50"], rows),
        "",
        f"Warm, moto and boto3 add {summary['plain']['warm_p50_ms'] / summary['direct']['warm_p50_ms']:.1f}x "
        "lambdalet's own invoke (boto3 builds, signs and parses the request; moto dispatches it in-process). "
        "A first call extracts the package, starts the function's runtime and runs its init; with SnapStart "
        "it also makes the template every later environment of the function is restored from (so a first call "
        "costs more, and each new environment after it less).",
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
