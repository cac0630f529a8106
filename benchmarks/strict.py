"""Benchmark (not a test): what `strict` adds to `standard`, per environment.

    python -m benchmarks.strict [--samples 40]

Interleaved sample by sample (the order alternates each round), two environments built as
`lambdalet serve` builds them (`runtime_api.server.lambda_function`), lambdalet's own runtime
client and a trivial handler; for each, from the environment's start (its Runtime API listener:
under strict, its network namespace too) to the runtime's first `GET /runtime/invocation/next`.
Apart, the parts: a network namespace with `lo` up and the listener (the worker-thread way), and
spawn and reap of `true` directly, through the machine-code exec helper and through the Python one
(both loading the deny-list). Needs root (namespaces, cgroups).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

from .common import (
    function_dir,
    git_revision,
    latency_summary,
    machine_info,
    markdown_table,
    utc_now,
    write_results,
)
from .sandbox import Variant, launch_to_first_next
from runtime_api import FunctionConfig
from runtime_api.logs import LogSink
from runtime_api.server import lambda_function
from sandbox import exec_helper, host, netns, seccomp
from sandbox.isolation import Isolation
from sandbox.strict import ElfHelper, PythonHelper, StrictExec


async def make_namespace() -> int:
    started = time.perf_counter_ns()
    namespace = await netns.open_namespace()
    took = time.perf_counter_ns() - started
    await namespace.listener.aclose()
    namespace.close()
    return took


def spawn(argv: list[str], fds: tuple[int, ...] = ()) -> int:
    started = time.perf_counter_ns()
    subprocess.run(argv, pass_fds=fds, check=True)
    return time.perf_counter_ns() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args(argv)
    machine = platform.machine()
    sink = LogSink(open(os.devnull, "wb"))
    timings: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        code = function_dir(Path(tmp))
        compared = []
        for level in (Isolation.STANDARD, Isolation.STRICT):
            # PYTHONPATH: the runtime imports this checkout's bootstrap wherever site-packages point.
            config = FunctionConfig(name=f"bench-{level}", code=str(code), handler="app.handler", isolation=level,
                                    env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
            function = lambda_function(config, sink)
            confinement = function.launcher.confinement
            if confinement.isolation is not level or confinement.filesystem is None:
                print(f"{level} is not fully permitted here (root needed): nothing to compare", file=sys.stderr)
                return 1
            compared.append(Variant(str(level), config, function.options, function.launcher, host.support().any))
            timings[f"start->first next, {level}"] = []
        for variant in compared * 2:  # warm the page cache
            trio.run(partial(launch_to_first_next, variant, sink, from_start=True))
        for round_ in range(args.samples):
            for variant in compared if round_ % 2 == 0 else compared[::-1]:
                timings[f"start->first next, {variant.label}"].append(
                    trio.run(partial(launch_to_first_next, variant, sink, from_start=True))[0])
    program = seccomp.deny_list(machine)
    elf, python = (StrictExec(ElfHelper(exec_helper.load(machine, program))), StrictExec(PythonHelper(program)))
    parts = {"network namespace + lo + listener": [], "spawn+reap true, direct": [],
             "spawn+reap true, machine-code helper": [], "spawn+reap true, Python helper": []}
    for _ in range(args.samples):
        parts["network namespace + lo + listener"].append(trio.run(make_namespace))
        parts["spawn+reap true, direct"].append(spawn(["/bin/true"]))
        parts["spawn+reap true, machine-code helper"].append(spawn(elf.argv(["true"], "/bin/true"), elf.pass_fds))
        parts["spawn+reap true, Python helper"].append(spawn(python.argv(["true"], "/bin/true")))
    elf.helper.close()
    summary = {name: latency_summary(values) for name, values in {**timings, **parts}.items()}
    revision, dirty = git_revision()
    rows = [[name, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['max']:.2f}"] for name, s in summary.items()]
    markdown = "\n".join([
        "# What isolation strict adds to standard, per environment",
        "",
        f"{utc_now()}, revision {revision}, {args.samples} interleaved samples, milliseconds; "
        "`python -m benchmarks.strict`.",
        "",
        markdown_table(["step", "p50", "p90", "max"], rows),
    ])
    if dirty:
        markdown += "\n\n* Measured on a working tree with uncommitted changes to: " + ", ".join(dirty) + "."
    write_results("strict", {"machine": machine_info(), "revision": revision, "uncommitted": dirty,
                             "samples": args.samples, "summary": summary}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
