"""Benchmark (not a test): what each isolation level costs an environment, in start-up time and in memory.

    python -m benchmarks.sandbox [--samples 30]

Interleaved sample by sample (the order of the variants rotates each round), each variant one
environment built exactly as `lambdalet serve` builds it (`runtime_api.server.lambda_function`),
running lambdalet's own runtime client and a trivial handler:
  * `none`: a plain process tree, as `lambdalet-rie` runs its runtime;
  * `standard, cgroups only`: memory and pids cgroups joined by the /bin/sh exec shim, no mount
    namespace (what `standard` is where mount namespaces are not permitted);
  * `standard`: the cgroups and the private /tmp and read-only /var/task (a mount namespace);
  * `strict`: whatever `--isolation strict` gives at the time of the run, labelled with what it
    actually ran as.
For each: environment launch -> the runtime's first `GET /runtime/invocation/next` (the figure a
user pays per cold start), and the memory of the idle environment at that moment: USS and PSS
summed over every process in it (/proc/<pid>/smaps_rollup) and its memory cgroup's
`memory.usage_in_bytes` where it has one.
Also, apart: spawn and reap of `true` direct vs through the shim (the shim's own price), and
creating and removing one environment's cgroups.
Needs root (cgroups, mount namespaces).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from benchmarks.common import (
    descendants,
    function_dir,
    git_revision,
    latency_summary,
    machine_info,
    markdown_table,
    percentile,
    utc_now,
    write_results,
)
from runtime_api import FunctionConfig
from runtime_api.config import runtime_environment
from runtime_api.environment import Environment, EnvironmentOptions
from runtime_api.logs import LogSink
from runtime_api.protocol import InitDone
from runtime_api.server import lambda_function
from sandbox import host
from sandbox.cgroups import CgroupSupport, EnvironmentCgroup
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


@dataclass(frozen=True)
class Variant:
    label: str
    config: FunctionConfig
    options: EnvironmentOptions


@dataclass(frozen=True)
class IdleMemory:
    processes: int
    uss_kb: int
    pss_kb: int
    cgroup_bytes: int | None


def variants(code: Path, sink: LogSink) -> list[Variant]:
    """The environments to compare, each with the options `lambdalet serve` would give it here."""
    found = []
    for label, isolation in (("none", Isolation.NONE), ("standard", Isolation.STANDARD),
                             ("strict", Isolation.STRICT)):
        config = FunctionConfig(name=f"bench-{label}", code=str(code), handler="app.handler", isolation=isolation)
        options = lambda_function(config, sink).options
        if isolation is Isolation.STRICT and options.isolation is not Isolation.STRICT:
            label = f"strict (runs as {options.isolation} at this revision)"
        elif isolation is not Isolation.NONE and options.filesystem is None:
            label += " (no mount namespace here)"
        if isolation is Isolation.STANDARD:
            found.append(Variant("standard, cgroups only", config, replace(options, filesystem=None)))
        found.append(Variant(label, config, options))
    return found


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    fields[key] = int(parts[0])
    except OSError:
        pass  # gone meanwhile
    return fields


def idle_memory(env: Environment) -> IdleMemory:
    """Every process in the environment: the runtime, its descendants and its cgroup's members."""
    pids = {env.pid, *(p.pid for p in descendants(env.pid))}
    cgroup_bytes = None
    if env.cgroup is not None:
        for directory in env.cgroup.created:
            with open(os.path.join(directory, "cgroup.procs")) as procs:
                pids.update(int(pid) for pid in procs.read().split())
        if env.cgroup.memory is not None:
            with open(os.path.join(env.cgroup.memory, "memory.usage_in_bytes")) as usage:
                cgroup_bytes = int(usage.read())
    rollups = [smaps_rollup_kb(pid) for pid in pids]
    return IdleMemory(
        processes=len(pids),
        uss_kb=sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups),
        pss_kb=sum(r.get("Pss", 0) for r in rollups),
        cgroup_bytes=cgroup_bytes,
    )


async def launch_to_first_next(variant: Variant, sink: LogSink) -> tuple[int, IdleMemory]:
    def make_spec(runtime_api: str) -> RuntimeSpec:
        env = runtime_environment(variant.config, runtime_api, metadata_token=variant.options.metadata_token)
        return RuntimeSpec(tuple(variant.config.runtime_argv), env, env["LAMBDA_TASK_ROOT"])

    env = TimedEnvironment(make_spec, variant.options, sink)
    env.first_next = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(env.run)
        started = time.perf_counter_ns()
        await env.launch()
        with trio.fail_after(30):  # a broken variant fails the run instead of hanging it
            await env.first_next.wait()
        memory = idle_memory(env)
        env.shutdown()
    assert (variant.options.isolation is not Isolation.NONE) == (env.cgroup is not None), variant.label
    return env.first_next_at - started, memory


def spawn_true(argv: list[str]) -> int:
    started = time.perf_counter_ns()
    subprocess.Popen(argv, start_new_session=True).wait()
    return time.perf_counter_ns() - started


def memory_summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "max": ordered[-1] if ordered else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args(argv)
    support = host.prepare(limits=True)
    if not support.any:
        print("no writable cgroups here (root needed): nothing to compare", file=sys.stderr)
        return 1
    launch: dict[str, list[int]] = {}
    memory: dict[str, list[IdleMemory]] = {}
    spawn: dict[str, list[int]] = {k: [] for k in (
        "spawn+reap true, direct", "spawn+reap true, shim", "cgroups create+remove")}
    sink = LogSink(open(os.devnull, "wb"))
    with tempfile.TemporaryDirectory() as tmp:
        code = function_dir(Path(tmp))
        compared = variants(code, sink)
        for variant in compared:
            launch[variant.label], memory[variant.label] = [], []
        for variant in compared * 2:  # warm the page cache
            trio.run(launch_to_first_next, variant, sink)
        spec = RuntimeSpec(("true",), {"PATH": os.environ.get("PATH", os.defpath)})
        for round_ in range(args.samples):
            shift = round_ % len(compared)
            for variant in compared[shift:] + compared[:shift]:
                took, idle = trio.run(launch_to_first_next, variant, sink)
                launch[variant.label].append(took)
                memory[variant.label].append(idle)
            spawn["spawn+reap true, direct"].append(spawn_true(["true"]))
            started = time.perf_counter_ns()
            cgroup = EnvironmentCgroup(support, memory_mb=128)
            created = time.perf_counter_ns() - started
            spawn["spawn+reap true, shim"].append(spawn_true(confined_argv(spec, cgroup, None)))
            started = time.perf_counter_ns()
            cgroup.remove()
            spawn["cgroups create+remove"].append(created + time.perf_counter_ns() - started)
    summary = {f"launch->next, {label}": latency_summary(values) for label, values in launch.items()}
    summary.update({name: latency_summary(values) for name, values in spawn.items()})
    idle = {
        label: {
            "processes": max(m.processes for m in samples),
            "uss_mib": memory_summary([m.uss_kb / 1024 for m in samples]),
            "pss_mib": memory_summary([m.pss_kb / 1024 for m in samples]),
            "cgroup_usage_mib": (memory_summary([m.cgroup_bytes / 2**20 for m in samples])
                                 if samples[0].cgroup_bytes is not None else None),
        }
        for label, samples in memory.items()
    }
    revision, dirty = git_revision()
    machine = machine_info()
    markdown = render(args.samples, support, summary, idle, revision, machine)
    if dirty:  # others work in the same tree: say what was measured beyond the commit
        markdown += "\n* Measured on a working tree with uncommitted changes to: " + ", ".join(dirty) + "."
    write_results("sandbox", {"machine": machine, "revision": revision, "uncommitted": dirty,
                              "samples": args.samples, "summary": summary, "idle_memory": idle}, markdown)
    print(markdown)
    return 0


def render(samples: int, support: CgroupSupport, summary: dict, idle: dict, revision: str, machine: dict) -> str:
    launch_rows = [[name.removeprefix("launch->next, "), f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['max']:.2f}"]
                   for name, s in summary.items() if name.startswith("launch->next, ")]
    part_rows = [[name, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['max']:.2f}"]
                 for name, s in summary.items() if not name.startswith("launch->next, ")]

    def cell(s: dict | None) -> str:
        return "–" if s is None else f"{s['p50']:.1f} / {s['p90']:.1f}"

    memory_rows = [[label, m["processes"], cell(m["uss_mib"]), cell(m["pss_mib"]), cell(m["cgroup_usage_mib"])]
                   for label, m in idle.items()]
    first = next(iter(summary.values()))
    added = {name.removeprefix("launch->next, "): s["p50"] - first["p50"]
             for name, s in summary.items() if name.startswith("launch->next, ")}
    shim = summary["spawn+reap true, shim"]["p50"] - summary["spawn+reap true, direct"]["p50"]
    return "\n".join([
        "# Environment cold start and idle memory per isolation level",
        "",
        f"Recorded {utc_now()} at {revision}; {machine.get('nproc')} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {samples} interleaved rounds "
        "(the variants' order rotating each round). lambdalet's own runtime client, a trivial handler, "
        "each environment built as `lambdalet serve` builds it.",
        f"cgroups used: {', '.join(support.directories())}.",
        "",
        "Reproduce: `python -m benchmarks.sandbox`",
        "",
        "Environment launch -> the runtime's first `GET next`, ms:",
        "",
        markdown_table(["isolation", "p50", "p90", "max"], launch_rows),
        "",
        "Memory of one idle environment (initialised, waiting for its first invocation), MiB, p50 / p90: "
        "USS and PSS summed over its processes (`/proc/<pid>/smaps_rollup`), and its memory cgroup's "
        "`memory.usage_in_bytes` (anonymous memory, kernel memory and the page cache charged to it):",
        "",
        markdown_table(["isolation", "processes", "USS", "PSS", "cgroup usage"], memory_rows),
        "",
        "Their parts, measured apart, ms:",
        "",
        markdown_table(["measure", "p50", "p90", "max"], part_rows),
        "",
        "* Launch -> first `GET next` against `none` (difference of medians; on a shared, noisy machine a "
        "millisecond is within the spread): "
        + ", ".join(f"{label} {value:+.2f} ms" for label, value in added.items() if label != "none") + ".",
        f"* The shim {shim:+.2f} ms per spawn; creating and removing the cgroups "
        f"{summary['cgroups create+remove']['p50']:.2f} ms per environment.",
    ])


if __name__ == "__main__":
    sys.exit(main())
