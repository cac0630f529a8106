"""Where the CPU of a SnapStart burst goes: per restore, in the server, in the template, in the
template's short-lived middle processes (each spare is forked twice: bootstrap/template.py) and in
the copies themselves, with the copies' page faults. A burst on a machine of few cores is bound by
this sum, not by any one process's turn.

    python -m benchmarks.burst_cpu [--runs 5] [--clients 200] [--sleep 1.0]

Each run starts `lambdalet serve --snapstart --concurrency <clients + 20>` and releases `--clients`
invocations at once (benchmarks/burst.py), the handler sleeping `--sleep` seconds. The server's and
every child's CPU is read from /proc/<pid>/schedstat before and after the burst (the scheduler's
own nanosecond count); the middles', which the template reaps, from the template's reaped-children
time in /proc/<pid>/stat (clock ticks: a sample, exact only over many). Results (medians over the
runs) go to benchmarks/results/burst-cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from .burst import HANDLER, burst
from .common import (PYTHON, REPO_ROOT, Server, free_port, function_dir, git_revision, machine_info, markdown_table,
                     median, percentile, utc_now, write_results)

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _cpu_ns(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _reaped_ms(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) * TICK_MS if fields else 0.0


def one_run(root: Path, clients: int, sleep: float) -> dict:
    code = function_dir(root, HANDLER)
    port = free_port()
    argv = [PYTHON, "-m", "runtime_api.cli", "serve", "--code", str(code), "--handler", "app.handler",
            "--snapstart", "--concurrency", str(clients + 20), "--timeout", "60", "--port", str(port)]
    with Server("lambdalet", argv, root, port, env={"PYTHONPATH": str(REPO_ROOT)}, log_dir=root) as server:
        pid = server.proc.pid
        time.sleep(1.0)  # the template parked, a copy staged
        before = {child: _cpu_ns(child) for child in _children(pid)}
        reaped_before = {child: _reaped_ms(child) for child in before}
        server_before = _cpu_ns(pid)
        wall, answers = burst(port, clients, sleep)
        server_ms = (_cpu_ns(pid) - server_before) / 1e6
        children = _children(pid)
        templates = [child for child in children if _reaped_ms(child) > reaped_before.get(child, 0.0)]
        middles_ms = sum(_reaped_ms(t) - reaped_before.get(t, 0.0) for t in templates)
        template_ms = sum(_cpu_ns(t) - before.get(t, 0) for t in templates) / 1e6
        copies = [child for child in children if child not in templates]
        copies_ms = sum(_cpu_ns(c) - before.get(c, 0) for c in copies) / 1e6
        faults = sorted(int(_stat(c)[7]) for c in copies if c not in before and _stat(c))
    beyond = sorted(max(0.0, elapsed - sleep) * 1000 for elapsed, status, error, _ in answers if status == 200 and not error)
    return {"failed": clients - len(beyond), "wall_beyond_ms": (wall - sleep) * 1000,
            "p99_beyond_ms": percentile(beyond, 99) if beyond else None,
            "restores_per_s": clients / max(wall - sleep, 1e-3),
            "server_ms": server_ms / clients, "template_ms": template_ms / clients,
            "middles_ms": middles_ms / clients, "copy_ms": copies_ms / clients,
            "copy_minor_faults": percentile(faults, 50) if faults else None}


PARTS = ("server_ms", "template_ms", "middles_ms", "copy_ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args(argv)
    runs = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lambdalet-burst-cpu-") as root:
            run = one_run(Path(root), args.clients, args.sleep)
        runs.append(run)
        print(f"run {number + 1}: " + ", ".join(f"{key} {value:.2f}" for key, value in run.items()
                                                 if isinstance(value, float)), flush=True)
    summary = {key: median([run[key] for run in runs if run[key] is not None])
               for key in ("wall_beyond_ms", "p99_beyond_ms", "restores_per_s", *PARTS, "copy_minor_faults")}
    summary["total_ms"] = sum(summary[key] for key in PARTS)
    revision, dirty = git_revision()
    data = {"when": utc_now(), "revision": revision, "dirty": dirty, "machine": machine_info(),
            "load_average_at_end": os.getloadavg(), "clients": args.clients, "sleep_s": args.sleep,
            "runs": runs, "median": summary}
    cores = os.cpu_count() or 1
    rows = [["server", f"{summary['server_ms']:.2f}"], ["template (its forks)", f"{summary['template_ms']:.2f}"],
            ["middle processes (sampled)", f"{summary['middles_ms']:.2f}"], ["the copy itself", f"{summary['copy_ms']:.2f}"],
            ["**all**", f"**{summary['total_ms']:.2f}**"]]
    markdown = (
        f"# Where a SnapStart burst's CPU goes\n\nRevision {revision}{' (dirty)' if dirty else ''}, {data['when']}; "
        f"{cores} cores; load average {data['load_average_at_end'][0]:.1f} at the end.\n\n"
        f"    python -m benchmarks.burst_cpu --runs {args.runs} --clients {args.clients} --sleep {args.sleep}\n\n"
        f"{args.clients} invocations of a SnapStart function released at once, each answered by a copy restored for "
        f"it; medians of {args.runs} runs, each on a fresh server. Wall time beyond the handler's "
        f"{summary['wall_beyond_ms']:.0f} ms, p99 beyond it {summary['p99_beyond_ms']:.0f} ms, "
        f"{summary['restores_per_s']:.0f} restores/s; a copy's minor page faults (median) "
        f"{summary['copy_minor_faults']:.0f}.\n\n"
        "CPU per restore (ms):\n\n" + markdown_table(["where", "ms"], rows, "lr") + "\n\n"
        f"With {cores} cores, CPU alone bounds a burst at {cores * 1000 / summary['total_ms']:.0f} restores/s, "
        f"and everything but the server at {cores * 1000 / (summary['total_ms'] - summary['server_ms']):.0f}/s.\n")
    print(markdown)
    if not args.no_write:
        write_results("burst-cpu", data, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
