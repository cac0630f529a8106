"""Benchmark (not a test): what Lambda's limits through cgroups add to an environment's cold start.

    python -m benchmarks.sandbox [--samples 30]

Interleaved sample by sample, limits off (a plain process tree, as `lambdalet-rie`) and on (the
default of `lambdalet serve`: memory, pids and v2 cgroups, joined by the /bin/sh exec shim):
  * environment launch -> the runtime's first `GET /runtime/invocation/next`, with lambdalet's
    own runtime client as `lambdalet serve` starts it (the figure a user pays per cold start);
  * the same with `/bin/true`-like cost isolated: spawn and reap of `true`, direct vs through
    the shim (the shim's own price);
  * creating and removing one environment's cgroups.
Needs root and writable cgroups for the "on" columns.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from benchmarks.common import function_dir, git_revision, latency_summary, machine_info, markdown_table, utc_now, write_results
from runtime_api import FunctionConfig
from runtime_api.config import runtime_environment
from runtime_api.environment import Environment, EnvironmentOptions
from runtime_api.logs import LogSink
from runtime_api.protocol import InitDone
from sandbox import host
from sandbox.cgroups import EnvironmentCgroup
from sandbox.isolation import Isolation
from sandbox.process import RuntimeSpec, confined_argv


class TimedEnvironment(Environment):
    """Records when the runtime's first `GET next` arrives (the protocol's InitDone)."""

    first_next: trio.Event
    first_next_at: int

    def _apply(self, actions):
        if not self.first_next.is_set() and any(isinstance(action, InitDone) for action in actions):
            self.first_next_at = time.perf_counter_ns()
            self.first_next.set()
        return super()._apply(actions)


async def launch_to_first_next(config: FunctionConfig, limits: bool) -> int:
    def make_spec(runtime_api: str) -> RuntimeSpec:
        env = runtime_environment(config, runtime_api, metadata_token="x")
        return RuntimeSpec(tuple(config.runtime_argv), env, env["LAMBDA_TASK_ROOT"])

    options = EnvironmentOptions(function_name=config.name, handler=config.handler,
                                 isolation=Isolation.STANDARD if limits else Isolation.NONE)
    env = TimedEnvironment(make_spec, options, LogSink(open(os.devnull, "wb")))
    env.first_next = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(env.run)
        started = time.perf_counter_ns()
        await env.launch()
        await env.first_next.wait()
        env.shutdown()
    assert limits == (env.cgroup is not None)
    return env.first_next_at - started


def spawn_true(argv: list[str]) -> int:
    started = time.perf_counter_ns()
    subprocess.Popen(argv, start_new_session=True).wait()
    return time.perf_counter_ns() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args(argv)
    support = host.prepare(limits=True)
    if not support.any:
        print("no writable cgroups here (root needed): nothing to compare", file=sys.stderr)
        return 1
    samples: dict[str, list[int]] = {k: [] for k in (
        "launch->next, limits off", "launch->next, limits on",
        "spawn+reap true, direct", "spawn+reap true, shim",
        "cgroups create+remove")}
    with tempfile.TemporaryDirectory() as tmp:
        code = function_dir(Path(tmp))
        config = FunctionConfig(name="bench", code=str(code), handler="app.handler")
        spec = RuntimeSpec(("true",), {"PATH": os.environ.get("PATH", os.defpath)})
        for _ in range(2):  # warm the page cache
            trio.run(launch_to_first_next, config, False)
            trio.run(launch_to_first_next, config, True)
        for _ in range(args.samples):
            samples["launch->next, limits off"].append(trio.run(launch_to_first_next, config, False))
            samples["launch->next, limits on"].append(trio.run(launch_to_first_next, config, True))
            samples["spawn+reap true, direct"].append(spawn_true(["true"]))
            started = time.perf_counter_ns()
            cgroup = EnvironmentCgroup(support, memory_mb=128)
            created = time.perf_counter_ns() - started
            samples["spawn+reap true, shim"].append(spawn_true(confined_argv(spec, cgroup, None)))
            started = time.perf_counter_ns()
            cgroup.remove()
            samples["cgroups create+remove"].append(created + time.perf_counter_ns() - started)
    summary = {name: latency_summary(values) for name, values in samples.items()}
    rows = [[name, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['max']:.2f}"] for name, s in summary.items()]
    added = summary["launch->next, limits on"]["p50"] - summary["launch->next, limits off"]["p50"]
    shim = summary["spawn+reap true, shim"]["p50"] - summary["spawn+reap true, direct"]["p50"]
    revision, dirty = git_revision()
    machine = machine_info()
    markdown = "\n".join([
        "# Environment cold start with and without Lambda's limits (cgroups)",
        "",
        f"Recorded {utc_now()} at {revision}; {machine.get('nproc')} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.samples} interleaved samples, ms.",
        f"cgroups used: {', '.join(d for d in support.directories())}.",
        "",
        "Reproduce: `python -m benchmarks.sandbox`",
        "",
        markdown_table(["measure", "p50", "p90", "max"], rows),
        "",
        f"* Limits change environment launch -> first `GET next` (lambdalet's runtime client) by {added:+.2f} ms "
        "(difference of medians; on a shared, noisy machine this is within the spread).",
        f"* Their own price, measured apart: the shim {shim:+.2f} ms per spawn, creating and removing the "
        f"cgroups {summary['cgroups create+remove']['p50']:.2f} ms per environment.",
    ])
    write_results("sandbox", {"machine": machine, "revision": revision, "summary": summary}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
