"""Benchmark (not a test): a warm invoke with one external extension subscribed to INVOKE,
lambdalet-rie against AWS's RIE with the same extension.

    python -m benchmarks.extensions [--rounds 9] [--invokes 500]

Each server runs `python -m awslambdaric app.handler` (a handler returning its event) with one
external extension in /opt/extensions: a Python program that registers for INVOKE and asks for its
next event, on one keep-alive connection, doing nothing else. Both servers read the fixed
/opt/extensions, so each runs in a mount namespace of its own with the run's directory bound at
/opt (needs root). A fresh server for every measurement, rounds interleaved (RIE then lambdalet-rie,
then the other way round, ...); per round 50 warm-up invokes, then N timed sequential invokes on
one keep-alive connection; the median over rounds of each round's p50 is reported, and their ratio.
Target: lambdalet-rie no slower than RIE. Results: benchmarks/results/extensions.{json,md}.

The timed invoke is what a caller sees: RIE answers it once the runtime and the extension have
asked for their next event; lambdalet-rie, as Lambda does, once the runtime's response is in (the
extension's part comes after, before the next invocation is let in).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from . import common, realparts
from .warm import WARMUP, Target, measure_latency, rotate

EXTENSION_NAME = "bench-extension"
# The extension, as its file's text: the Extensions API's loop and nothing more, so that what is
# measured is the servers' part.
EXTENSION = '''
import http.client, os, sys
api = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
api.request("POST", "/2020-01-01/extension/register", body=b'{"events": ["INVOKE"]}',
            headers={"Lambda-Extension-Name": os.path.basename(sys.argv[0])})
answer = api.getresponse()
answer.read()
identifier = answer.getheader("Lambda-Extension-Identifier")
print("bench-extension registered", answer.status, flush=True)
while True:
    api.request("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": identifier})
    answer = api.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"bench-extension: event/next answered {answer.status}")
'''


def write_opt(root: Path, extension: bool = True) -> Path:
    """A directory to show at /opt: extensions/ holding the extension (or nothing)."""
    opt = root / ("opt" if extension else "opt-empty")
    program = opt / "extensions" / EXTENSION_NAME
    program.parent.mkdir(parents=True)
    if extension:
        program.write_text(f"#!{common.PYTHON}\n{EXTENSION}")
        program.chmod(0o755)
    return opt


def latency_round(target: Target, code: Path, opt: Path, log_dir: Path, env: dict[str, str], n: int) -> dict:
    """One fresh server with `opt` at /opt, measured; also whether the extension registered."""
    log_dir.mkdir(parents=True)
    server = target.make_server(code, log_dir, env)
    server.argv = [*common.private_opt(opt), *server.argv]
    with server:
        result = measure_latency(server.invoke_port, WARMUP, n, server)
    said = b"".join(path.read_bytes() for path in log_dir.glob("*.log"))
    result["extension_registered"] = b"bench-extension registered 200" in said
    result["leftover_processes_killed"] = server.leftovers
    return result


def key(target: Target, extension: bool) -> str:
    return f"{target.label}, {'with the extension' if extension else 'no extension'}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.extensions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--invokes", type=int, default=500, help="timed sequential invokes per round")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    reason = common.private_opt_unavailable()
    if reason:
        sys.exit(f"benchmarks.extensions: {reason}")
    common.become_subreaper()
    targets = [Target("rie"), Target("lambdalet-rie")]
    cases = [(target, extension) for extension in (True, False) for target in targets]
    runs: dict[str, list[dict]] = {key(*case): [] for case in cases}
    load_start = list(os.getloadavg())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lambdalet-bench-") as tmp:
        root = Path(tmp)
        code, opts = common.function_dir(root), {True: write_opt(root), False: write_opt(root, extension=False)}
        realparts.rie_binary()  # fetched before anything is timed
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(common.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        for r in range(args.rounds):
            for target, extension in rotate(cases, r):
                name = key(target, extension)
                result = latency_round(target, code, opts[extension], root / f"logs-{r}-{len(runs[name])}-{name}",
                                       env, args.invokes)
                if result["extension_registered"] != extension:
                    sys.exit(f"{name}: the extension registered: {result['extension_registered']} (round {r + 1})")
                runs[name].append(result)
                print(f"[{r + 1}/{args.rounds}] {name:50s} p50 {result['p50']:.3f} ms", file=sys.stderr)
    p50 = {name: common.median([run["p50"] for run in runs[name]]) for name in runs}
    p99 = {name: common.median([run["p99"] for run in runs[name]]) for name in runs}
    cpu = {name: common.median([run["server_cpu_us"] for run in runs[name]]) for name in runs}

    def ratio(extension: bool, paired: bool = False) -> float:
        lrie, rie = key(targets[1], extension), key(targets[0], extension)
        if paired:
            return common.median([a["p50"] / b["p50"] for a, b in zip(runs[lrie], runs[rie])])
        return p50[lrie] / p50[rie]

    revision, dirty = common.git_revision()
    machine = common.machine_info()
    rows = [[name, f"{p50[name]:.3f} ms", f"{p99[name]:.3f} ms", f"{cpu[name]:.0f} µs",
             ", ".join(f"{run['p50']:.3f}" for run in runs[name])] for name in runs]
    command = common.command_line("benchmarks.extensions", argv)
    with_ext, without = ratio(True), ratio(False)
    markdown = "\n\n".join([
        "# Warm invokes with an external extension subscribed to INVOKE: lambdalet-rie vs AWS's RIE",
        f"Recorded {common.utc_now()} at commit {revision}{' (with uncommitted changes)' if dirty else ''} on "
        f"{machine['nproc']} cores ({machine['cpu_model']}), Python {machine['python']}; load average "
        f"{' '.join(f'{x:.2f}' for x in load_start)} at the start (a shared machine: compare rows, not runs). "
        f"{args.rounds} interleaved rounds, a fresh server each, {WARMUP} warm-up then {args.invokes} timed "
        f"sequential invokes on one keep-alive connection; medians of the rounds' percentiles; "
        f"{time.monotonic() - started:.0f} s. Reproduce (as root, from the repository root): `{command}`.",
        "Both run awslambdaric (`def handler(e, c): return e`) and the same extension in /opt/extensions (a "
        "private /opt per server): a Python loop registered for INVOKE that asks for its next event on one "
        "keep-alive connection. The rows without it (an empty /opt/extensions) are the peers that show what "
        "the machine's load does to each server in the same run. Server CPU is the server process's "
        "user+system time per timed invoke.",
        common.markdown_table(["server", "p50", "p99", "server CPU / invoke", "p50 per round (ms)"], rows),
        f"lambdalet-rie / RIE, p50, with the extension: **{with_ext:.2f}** (target ≤ 1.00: "
        f"{'met' if with_ext <= 1 else 'NOT met'}); within each round, median: {ratio(True, True):.2f}. "
        f"Without it, in the same run: {without:.2f} (within each round {ratio(False, True):.2f}).",
        "RIE answers the caller only once the runtime and the extension have asked for their next event; "
        "lambdalet-rie answers as the runtime's response is in, as Lambda does (the deviation release-on-response "
        "of tests/conformance/deviations.py), and holds the next invocation until the extension has asked again.",
    ])
    data = {"machine": machine, "revision": revision, "dirty": dirty, "command": command, "runs": runs,
            "p50_ms": p50, "p99_ms": p99, "ratio_p50_with_extension": with_ext, "ratio_p50_without": without}
    common.write_results("extensions", data, markdown, args.output)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
