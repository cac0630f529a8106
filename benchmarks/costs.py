"""Benchmark (not a test): the small costs behind choices the code's comments explain.

    python -m benchmarks.costs [--samples 21]

* **imports** a runtime start or a command avoids: each module imported in a fresh interpreter
  (`python -S`, site-packages on PYTHONPATH), timed inside it around the import statement alone.
  `logging` (bootstrap/logs.py installs its handler only when something imports it),
  `encodings.idna` (bootstrap/client.py passes an ASCII host as bytes), `runpy` (what `python -m`
  imports; the shell `bootstrap` and the server start the runtime with `-c`), and pyelftools as
  sandbox/doctor.py imports it (runtime_api/cli.py imports doctor only for `lambdalet doctor`).
* **the walk a SnapStart restore is spared** (runtime_api/codewatch.py): `os.walk` and `os.stat`
  of every file of an installed botocore, a tree functions often vendor, against one
  `CodeWatch.changed()` over the same tree, unchanged.
* **joining a cgroup** (sandbox/cgroups.py; root and cgroup v1 only): spawn and reap a `/bin/sh`
  that execs `true`, plain, or after writing `0` to the `tasks` file of a memory and a pids cgroup
  (the shim's way), or to their `cgroup.procs` instead.

Every measure is sampled round-robin with the others (so the machine's noise falls on all alike);
medians and p90. Results: benchmarks/results/costs.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from . import common

IMPORTS = {
    "logging": "import logging",
    "encodings.idna": "import encodings.idna",
    "runpy (what `python -m` imports)": "import runpy",
    "pyelftools, as sandbox/doctor.py imports it": "import elftools.elf.elffile, elftools.common.exceptions",
}
_TIMED = "import time\nt = time.perf_counter_ns()\n{statement}\nprint(time.perf_counter_ns() - t)\n"


def import_ns(statement: str) -> int:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    done = subprocess.run([common.PYTHON, "-S", "-c", _TIMED.format(statement=statement)], env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout)


def walk_ns(tree: str) -> tuple[int, int]:
    """A stamp walk: every file under `tree` stat'ed. (ns, files)"""
    started, files = time.perf_counter_ns(), 0
    for directory, _, names in os.walk(tree):
        for name in names:
            os.stat(os.path.join(directory, name))
            files += 1
    return time.perf_counter_ns() - started, files


def spawn_ns(script: str) -> int:
    started = time.perf_counter_ns()
    subprocess.run(["/bin/sh", "-c", script], check=True)
    return time.perf_counter_ns() - started


def cgroup_joins() -> tuple[dict[str, str], object] | None:
    """The shell scripts to compare, and the cgroup they join (None where it cannot be made here)."""
    from sandbox.cgroups import EnvironmentCgroup, detect

    support = detect()
    if os.geteuid() != 0 or not (support.memory and support.pids):
        return None
    cgroup = EnvironmentCgroup(support, memory_mb=128)
    tasks = cgroup.tasks_files()
    procs = [os.path.join(os.path.dirname(path), "cgroup.procs") for path in tasks]
    return {
        "sh, exec true": "exec /bin/true",
        "sh, join by `tasks`, exec true": "; ".join(f"echo 0 > {p}" for p in tasks) + "; exec /bin/true",
        "sh, join by `cgroup.procs`, exec true": "; ".join(f"echo 0 > {p}" for p in procs) + "; exec /bin/true",
    }, cgroup


def measure(samples: int, log) -> dict:
    spec = importlib.util.find_spec("botocore")
    tree = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None
    watch = None
    if tree:
        from runtime_api.codewatch import CodeWatch

        watch = CodeWatch((tree,))
    joins = cgroup_joins()
    scripts, cgroup = joins if joins else ({}, None)
    found: dict[str, list[int]] = {}
    files = 0
    try:
        for round_ in range(samples):
            for label, statement in IMPORTS.items():
                found.setdefault(f"import {label}", []).append(import_ns(statement))
            if tree:
                took, files = walk_ns(tree)
                found.setdefault("walk: stat every file", []).append(took)
                started = time.perf_counter_ns()
                assert not watch.changed(), f"{tree} changed during the run"
                found.setdefault("CodeWatch.changed()", []).append(time.perf_counter_ns() - started)
            for label, script in scripts.items():
                found.setdefault(label, []).append(spawn_ns(script))
            log(f"round {round_ + 1}/{samples}")
    finally:
        if watch:
            watch.close()
        if cgroup:
            cgroup.remove()
    summary = {}
    for label, values in found.items():
        values.sort()
        summary[label] = {"p50": common.percentile(values, 50) / 1e6, "p90": common.percentile(values, 90) / 1e6,
                          "n": len(values)}
    return {"summary": summary, "walked": {"tree": tree, "files": files}, "cgroups": bool(cgroup),
            "samples_ns": found}


def render(data: dict) -> str:
    summary = data["summary"]

    def rows(labels):
        return [[label, f"{summary[label]['p50']:.3f}", f"{summary[label]['p90']:.3f}"] for label in labels]

    machine = data["machine"]
    parts = [
        "# Small costs behind the code's choices",
        "",
        f"Recorded {data['recorded']} at {data['revision']}; {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"Python {machine['python']}, kernel {machine['kernel']}; {data['samples']} interleaved rounds, milliseconds.",
        "",
        f"Reproduce: `{data['command']}`",
        "",
        "Imports, in a fresh `python -S` (site-packages on PYTHONPATH), timed around the import statement:",
        "",
        common.markdown_table(["import", "p50", "p90"], rows(l for l in summary if l.startswith("import "))),
    ]
    if data["walked"]["tree"]:
        parts += ["", f"A SnapStart restore's check for changed code, over botocore's {data['walked']['files']:,} "
                      "files (runtime_api/codewatch.py):", "",
                  common.markdown_table(["check", "p50", "p90"], rows(["walk: stat every file", "CodeWatch.changed()"]))]
    joins = [label for label in summary if label.startswith("sh, ")]
    if joins:
        parts += ["", "Joining a memory and a pids cgroup (v1) before the runtime's exec, spawn to reap "
                      "(sandbox/cgroups.py):", "", common.markdown_table(["shim", "p50", "p90"], rows(joins))]
    else:
        parts += ["", "No cgroup measures: they need root and writable cgroup v1 memory and pids hierarchies."]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.costs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=21, help="interleaved rounds (default 21)")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR, help="where to write the results")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"benchmarks.costs: {message}", file=sys.stderr, flush=True)

    data = {"recorded": common.utc_now(), "revision": common.git_revision()[0], "machine": common.machine_info(),
            "samples": args.samples,
            "command": common.command_line("benchmarks.costs", argv if argv is not None else sys.argv[1:])}
    data.update(measure(args.samples, log))
    markdown = render(data)
    json_path, md_path = common.write_results("costs", data, markdown, args.output)
    print(markdown)
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
