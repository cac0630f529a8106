"""Benchmark (not a test): what each isolation level costs an environment, in start-up time and in memory.

    python -m benchmarks.sandbox [--samples 30] [--as-user nobody] [--output benchmarks/results]

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
Needs root (cgroups, mount namespaces); writes results/sandbox.{json,md}.

With `--as-user nobody` (run as root) it measures what each level costs an unprivileged user
instead: the benchmark runs again as that user (`setpriv --reuid --regid --clear-groups`, as
tests/sandbox/test_unprivileged.py starts `lambdalet serve`), where `standard` and `strict` are
made one user namespace further in (sandbox/userns.py). That user has no cgroups (unless
delegated): no `cgroups only` variant, no cgroups row, no memory cgroup column; RLIMIT_DATA is the
memory guard. The checkout must be readable by that user (it is said and the run refused
otherwise); an interpreter under a directory closed to others (pyenv in root's 0700 home) is shown
to it through a private mount namespace root makes around the run (a 0755 tmpfs over the closed
directory, the interpreter bound back), as the test does. Writes results/sandbox-unprivileged.{json,md}
(as does a run by such a user itself, without `--as-user`).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from .common import (
    PYTHON,
    REPO_ROOT,
    RESULTS_DIR,
    closed_ancestor,
    descendants,
    function_dir,
    git_revision,
    latency_summary,
    machine_info,
    markdown_table,
    percentile,
    shown_to_others,
    utc_now,
    write_results,
)
from runtime_api import FunctionConfig
from runtime_api.config import runtime_environment
from runtime_api.environment import Environment, EnvironmentOptions
from runtime_api.launcher import Launcher
from runtime_api.logs import LogSink
from runtime_api.server import lambda_function
from sandbox import host, userns
from sandbox.cgroups import CgroupSupport, EnvironmentCgroup
from sandbox.confinement import Confinement
from sandbox.isolation import Isolation
from sandbox.process import RuntimeSpec, confined_argv


@dataclass(frozen=True)
class Variant:
    label: str
    config: FunctionConfig
    options: EnvironmentOptions
    launcher: Launcher  # its confinement, as `lambdalet serve` gives it here
    cgroups: bool  # whether its environment gets cgroups here (else RLIMIT_DATA, or nothing at none)

    @property
    def confinement(self) -> Confinement:
        return self.launcher.confinement


@dataclass(frozen=True)
class IdleMemory:
    processes: int
    uss_kb: int
    pss_kb: int
    cgroup_bytes: int | None


def variants(code: Path, sink: LogSink) -> list[Variant]:
    """The environments to compare, each with the options `lambdalet serve` would give it here,
    labelled with what it runs as."""
    cgroups = host.support().any
    found = []
    for isolation in (Isolation.NONE, Isolation.STANDARD, Isolation.STRICT):
        config = FunctionConfig(name=f"bench-{isolation}", code=str(code), handler="app.handler", isolation=isolation)
        function = lambda_function(config, sink)
        options, launcher = function.options, function.launcher
        confined = isolation is not Isolation.NONE
        if isolation is Isolation.STANDARD and cgroups:
            cgroups_only = type(launcher)(replace(launcher.confinement, filesystem=None))
            found.append(Variant("standard, cgroups only", config, options, cgroups_only, cgroups))
        found.append(Variant(runs_as(isolation, launcher.confinement), config, options, launcher, confined and cgroups))
    return found


def runs_as(requested: Isolation, confinement: Confinement) -> str:
    """The level's name, with what it lacks or is made with here, e.g. `standard (user namespace)`."""
    if requested is Isolation.STRICT and confinement.isolation is not Isolation.STRICT:
        return f"strict (runs as {confinement.isolation} at this revision)"
    notes = []
    if requested is not Isolation.NONE:
        if confinement.filesystem is None:
            notes.append("no mount namespace here")
        elif userns.needed():
            notes.append("user namespace")
    if confinement.isolation is Isolation.STRICT:
        found = host.strict_support()
        if not found.netns:
            notes.append("no network namespace")
        if found.seccomp_problem is not None:
            notes.append("no seccomp deny-list")
    return f"{requested} ({', '.join(notes)})" if notes else str(requested)


def smaps_rollup_kb(pid: int) -> dict[str, int]:
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                parts = value.split()
                if len(parts) == 2 and parts[1] == "kB":
                    fields[key] = int(parts[0])
    except (FileNotFoundError, ProcessLookupError):
        pass  # gone meanwhile (not readable would be a broken measurement: that fails the run)
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


async def launch_to_first_next(variant: Variant, sink: LogSink, *,
                               from_start: bool = False) -> tuple[int, IdleMemory]:
    """Nanoseconds from the runtime's launch (`from_start`: from the environment's start, its
    Runtime API listener included: strict's network namespace) to its first `next`, and the idle
    environment's memory then."""
    managed = variant.config.managed_runtime()  # the function's Python runtime, as the server starts it

    def make_spec(runtime_api: str) -> RuntimeSpec:
        env = runtime_environment(variant.config, runtime_api, managed=managed,
                                  metadata_token=variant.options.endpoints.metadata_token)
        return RuntimeSpec(managed.argv, env, env["LAMBDA_TASK_ROOT"])

    env = Environment(make_spec, variant.options, sink, variant.launcher)
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        await nursery.start(env.run)
        if not from_start:
            started = trio.current_time()
        await env.launch()
        with trio.fail_after(30):  # a broken variant fails the run instead of hanging it
            await env.wait_initialised()
        memory = idle_memory(env)
        env.shutdown()
    assert variant.cgroups == (env.cgroup is not None), variant.label
    # The moment the runtime's first `next` arrived (the protocol's InitDone), on trio's clock.
    return round((env.initialised_at - started) * 1e9), memory


def spawn_true(argv: list[str]) -> int:
    started = time.perf_counter_ns()
    subprocess.Popen(argv, start_new_session=True).wait()
    return time.perf_counter_ns() - started


def memory_summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "max": ordered[-1] if ordered else float("nan")}


def measure(samples: int, support: CgroupSupport) -> dict:
    """The interleaved rounds, as whoever runs this (root, or the user of `--as-user`)."""
    launch: dict[str, list[int]] = {}
    memory: dict[str, list[IdleMemory]] = {}
    spawn: dict[str, list[int]] = {k: [] for k in ("spawn+reap true, direct", "spawn+reap true, shim")}
    if support.any:
        spawn["cgroups create+remove"] = []
    sink = LogSink(open(os.devnull, "wb"))
    with tempfile.TemporaryDirectory() as tmp:
        code = function_dir(Path(tmp))
        compared = variants(code, sink)
        for variant in compared:
            launch[variant.label], memory[variant.label] = [], []
        for variant in compared * 2:  # warm the page cache
            trio.run(launch_to_first_next, variant, sink)
        spec = RuntimeSpec(("true",), {"PATH": os.environ.get("PATH", os.defpath)})
        for round_ in range(samples):
            shift = round_ % len(compared)
            for variant in compared[shift:] + compared[:shift]:
                took, idle = trio.run(launch_to_first_next, variant, sink)
                launch[variant.label].append(took)
                memory[variant.label].append(idle)
            spawn["spawn+reap true, direct"].append(spawn_true(["true"]))
            if not support.any:  # the shim of an environment of 128 MB without a memory cgroup
                spawn["spawn+reap true, shim"].append(spawn_true(confined_argv(spec, None, 128)))
                continue
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
    return {"machine": machine_info(), "samples": samples, "summary": summary, "idle_memory": idle,
            "cgroups": support.directories()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--as-user", metavar="USER",
                        help="as root: measure as this unprivileged user (results: sandbox-unprivileged)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)  # the run as --as-user's user
    args = parser.parse_args(argv)
    if args.as_user is not None:
        return run_as(args.as_user, args.samples, args.output)
    support = host.prepare(limits=True)
    unprivileged = userns.needed()
    if not unprivileged and not support.any:
        print("no writable cgroups here (root needed): nothing to compare", file=sys.stderr)
        return 1
    measured = measure(args.samples, support)
    if args.emit_json:
        json.dump(measured, sys.stdout)
        return 0
    user = pwd.getpwuid(os.getuid()).pw_name if unprivileged else None
    report(measured, args.output, user=user)
    return 0


def report(measured: dict, output: Path, *, user: str | None = None, shown: dict[str, str] | None = None) -> None:
    """Writes results/sandbox.{json,md}, or sandbox-unprivileged.{json,md} for a run as `user`."""
    revision, dirty = git_revision()
    machine = measured["machine"]
    markdown = render(measured["samples"], measured["cgroups"], measured["summary"], measured["idle_memory"],
                      revision, machine, user=user, shown=shown or {})
    if dirty:  # others work in the same tree: say what was measured beyond the commit
        markdown += "\n* Measured on a working tree with uncommitted changes to: " + ", ".join(dirty) + "."
    data = {"machine": machine, "revision": revision, "uncommitted": dirty, "samples": measured["samples"],
            "summary": measured["summary"], "idle_memory": measured["idle_memory"]}
    if user is not None:
        data.update(user=user, cgroups=measured["cgroups"], interpreter_shown=shown or {})
    write_results("sandbox" if user is None else "sandbox-unprivileged", data, markdown, output)
    print(markdown)


# --- as an unprivileged user ------------------------------------------------------------------

def run_as(name: str, samples: int, output: Path) -> int:
    """Root runs this benchmark again as user `name` and records what it measured."""
    def refuse(reason: str) -> int:
        print(f"benchmarks.sandbox --as-user {name}: {reason}", file=sys.stderr)
        return 2

    if os.geteuid() != 0:
        return refuse("needs root, to become that user (as that user, run without --as-user)")
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return refuse("no such user")
    if user.pw_uid == 0:
        return refuse("not an unprivileged user")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return refuse("needs util-linux's setpriv")
    drop = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    env = {**os.environ, "HOME": user.pw_dir, "USER": name, "LOGNAME": name, "PYTHONPATH": str(REPO_ROOT)}
    readable = subprocess.run([*drop, "test", "-r", str(REPO_ROOT / "benchmarks" / "sandbox.py")],
                              cwd="/", env=env, stdin=subprocess.DEVNULL)
    if readable.returncode != 0:
        closed = closed_ancestor(REPO_ROOT)
        return refuse(f"the checkout {REPO_ROOT} is not readable by that user"
                      + (f" ({closed} is closed to others)" if closed else "")
                      + "; run from a checkout it can read")
    with tempfile.TemporaryDirectory(prefix="lambdalet-bench-stage-") as stage:
        wrap, shown = [], {}
        probe = [PYTHON, "-c", "import trio, msgspec, h11, runtime_api, sandbox, bootstrap, benchmarks.common"]
        if not _runs(drop, probe, env):
            # The interpreter's prefixes, where a directory closed to others hides them (pyenv in
            # root's 0700 home), shown to the user through a private mount namespace.
            prefixes = [os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)]
            wrap, shown = shown_to_others(prefixes, Path(stage))
            if not shown or not _runs([*wrap, *drop], probe, env):
                return refuse(f"the interpreter {PYTHON} cannot import lambdalet's dependencies as that user "
                              f"(PYTHONPATH={REPO_ROOT})")
        print(f"benchmarks.sandbox: measuring as {name} (uid {user.pw_uid}, gid {user.pw_gid})", file=sys.stderr)
        run = subprocess.run([*wrap, *drop, PYTHON, "-m", "benchmarks.sandbox", "--samples", str(samples),
                              "--emit-json"], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE)
    if run.returncode != 0:
        print(f"benchmarks.sandbox: the run as {name} failed (exit status {run.returncode})", file=sys.stderr)
        return run.returncode if run.returncode > 0 else 1
    report(json.loads(run.stdout), output, user=name, shown=shown)
    return 0


def _runs(prefix: list[str], argv: list[str], env: dict[str, str]) -> bool:
    return subprocess.run([*prefix, *argv], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def render(samples: int, cgroups: list[str], summary: dict, idle: dict, revision: str, machine: dict, *,
           user: str | None = None, shown: dict[str, str] | None = None) -> str:
    launch_rows = [[name.removeprefix("launch->next, "), f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['max']:.2f}"]
                   for name, s in summary.items() if name.startswith("launch->next, ")]
    part_rows = [[name, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['max']:.2f}"]
                 for name, s in summary.items() if not name.startswith("launch->next, ")]

    def cell(s: dict | None) -> str:
        return "–" if s is None else f"{s['p50']:.1f} / {s['p90']:.1f}"

    with_cgroup = any(m["cgroup_usage_mib"] is not None for m in idle.values())
    memory_rows = [[label, m["processes"], cell(m["uss_mib"]), cell(m["pss_mib"])]
                   + ([cell(m["cgroup_usage_mib"])] if with_cgroup else []) for label, m in idle.items()]
    first = next(iter(summary.values()))
    added = {name.removeprefix("launch->next, "): s["p50"] - first["p50"]
             for name, s in summary.items() if name.startswith("launch->next, ")}
    shim = summary["spawn+reap true, shim"]["p50"] - summary["spawn+reap true, direct"]["p50"]
    if user is None:
        title, who, reproduce = "", [], "`python -m benchmarks.sandbox`"
    else:
        title = ", as an unprivileged user"
        who = [f"Run as user `{user}` (`setpriv --reuid --regid --clear-groups`, no capabilities): `standard` and "
               "`strict` are made one user namespace further in (`sandbox/userns.py`)."]
        who += [f"The interpreter's {path} (under {closed}, closed to others) shown to that user through a private "
                f"mount namespace made by root around the run: a 0755 tmpfs over {closed}, {path} bound back."
                for path, closed in (shown or {}).items()]
        reproduce = f"`python -m benchmarks.sandbox --as-user {user}` (as root)"
    cgroups_line = (f"cgroups used: {', '.join(cgroups)}." if cgroups else
                    "No cgroups (none writable by this user): RLIMIT_DATA is each environment's memory guard, "
                    "its process group the tree a timeout kills.")
    memory_text = ("Memory of one idle environment (initialised, waiting for its first invocation), MiB, p50 / p90: "
                   "USS and PSS summed over its processes (`/proc/<pid>/smaps_rollup`)")
    if with_cgroup:
        memory_text += (", and its memory cgroup's `memory.usage_in_bytes` (anonymous memory, kernel memory and "
                        "the page cache charged to it)")
    parts_line = f"* The shim {shim:+.2f} ms per spawn"
    if "cgroups create+remove" in summary:
        parts_line += (f"; creating and removing the cgroups "
                       f"{summary['cgroups create+remove']['p50']:.2f} ms per environment.")
    else:
        parts_line += " (its RLIMIT_DATA; no cgroups to join)."
    return "\n".join([
        f"# Environment cold start and idle memory per isolation level{title}",
        "",
        f"Recorded {utc_now()} at {revision}; {machine.get('nproc')} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {samples} interleaved rounds "
        "(the variants' order rotating each round). lambdalet's own runtime client, a trivial handler, "
        "each environment built as `lambdalet serve` builds it.",
        *who,
        cgroups_line,
        "",
        f"Reproduce: {reproduce}",
        "",
        "Environment launch -> the runtime's first `GET next`, ms:",
        "",
        markdown_table(["isolation", "p50", "p90", "max"], launch_rows),
        "",
        memory_text + ":",
        "",
        markdown_table(["isolation", "processes", "USS", "PSS"] + (["cgroup usage"] if with_cgroup else []),
                       memory_rows),
        "",
        "Their parts, measured apart, ms:",
        "",
        markdown_table(["measure", "p50", "p90", "max"], part_rows),
        "",
        "* Launch -> first `GET next` against `none` (difference of medians; on a shared, noisy machine a "
        "millisecond is within the spread): "
        + ", ".join(f"{label} {value:+.2f} ms" for label, value in added.items() if label != "none") + ".",
        parts_line,
    ])


if __name__ == "__main__":
    sys.exit(main())
