"""Scale on one machine: bursts of simultaneous invocations, and many restored environments held at
once (issue 19).

    python -m benchmarks.scale [--bursts 50,200,500] [--density 100,500,1000] [--quick]

* **Bursts:** for each size N, a fresh `lambdalet serve --concurrency N+20` and N invocations released
  at once (benchmarks/burst.py's barrier), whose handler sleeps 1 s: wall time and p50/p99 beyond
  the handler's own, for a SnapStart function (every environment a restored copy) and an ordinary
  one (every environment a cold start).
* **Density:** N restored copies of a trivial SnapStart function made at once (a burst of N whose
  handler sleeps long enough that none is reused) and then held idle: the private memory (USS) of
  all copies, the server's resident memory, the CPU they all use over 10 idle seconds, and the
  latency of invoking one of them (sequential invocations, each to an idle copy) against the same
  with 10 environments.

Results go to benchmarks/results/scale.{json,md,png} (the chart needs the `bench` extra).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from pathlib import Path

from .burst import burst
from .common import (HOST, PYTHON, REPO_ROOT, Server, cpu_seconds, descendants, free_port, function_dir, git_revision,
                     machine_info, markdown_table, percentile, utc_now, write_results)

SLEEPER = """
import json, time, decimal, email.mime.text, http.client

def handler(event, context):
    time.sleep(event.get("s", 0))
    return {"ok": True}
"""
PATH = "/2015-03-31/functions/function/invocations"
IDLE_SECONDS = 10.0


def serve(root: Path, concurrency: int, snapstart: bool) -> Server:
    code = function_dir(root, SLEEPER)
    port = free_port()
    argv = [PYTHON, "-m", "runtime_api.cli", "serve", "--code", str(code), "--handler", "app.handler",
            "--concurrency", str(concurrency), "--timeout", "120", "--idle-timeout", "3600", "--port", str(port),
            "--state-dir", str(root / "state")]
    if snapstart:
        argv.append("--snapstart")
    return Server("lambdalet", argv, root, port, env={"PYTHONPATH": str(REPO_ROOT)}, log_dir=root)


def burst_row(size: int, snapstart: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="lambdalet-scale-") as root:
        with serve(Path(root), size + 20, snapstart) as server:
            wall, answers = burst(server.invoke_port, size, 1.0)
    ok = sorted(max(0.0, elapsed - 1.0) * 1000 for elapsed, status, error, _ in answers if status == 200 and not error)
    return {"size": size, "snapstart": snapstart, "failed": size - len(ok), "wall_beyond_ms": (wall - 1.0) * 1000,
            "p50_beyond_ms": percentile(ok, 50) if ok else None, "p99_beyond_ms": percentile(ok, 99) if ok else None}


def private_kib(pid: int) -> tuple[int, int]:
    """(USS, RSS) of one process in KiB."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        return 0, 0
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), fields.get("Rss", 0)


def invoke_latencies(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            connection.request("POST", PATH, body=b"{}")
            response = connection.getresponse()
            response.read()
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status == 200
    finally:
        connection.close()
    return sorted(samples)


def density_row(size: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="lambdalet-scale-") as root:
        with serve(Path(root), size, True) as server:
            # Long enough that every invocation is still in its handler when the last one starts.
            wall, answers = burst(server.invoke_port, size, 2.0 + size / 100)
            failed = sum(1 for _, status, error, _ in answers if status != 200 or error)
            processes = descendants(server.proc.pid)
            copies = [p.pid for p in processes if p.ppid == server.proc.pid]
            uss = rss = 0
            for pid in copies:
                u, r = private_kib(pid)
                uss, rss = uss + u, rss + r
            server_uss, server_rss = private_kib(server.proc.pid)
            everyone = [server.proc.pid, *[p.pid for p in processes]]
            before = sum(cpu_seconds(pid) for pid in everyone)
            time.sleep(IDLE_SECONDS)
            idle_cpu = (sum(cpu_seconds(pid) for pid in everyone) - before) / IDLE_SECONDS
            latencies = invoke_latencies(server.invoke_port, 200)
    return {"size": size, "failed": failed, "processes": len(processes), "copies_uss_mib": uss / 1024,
            "copies_rss_mib": rss / 1024, "server_rss_mib": server_rss / 1024, "idle_cpu_percent": idle_cpu * 100,
            "invoke_p50_ms": percentile(latencies, 50), "invoke_p99_ms": percentile(latencies, 99)}


def chart(data: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for snapstart, label in ((True, "SnapStart"), (False, "ordinary")):
        rows = [r for r in data["bursts"] if r["snapstart"] is snapstart]
        left.plot([r["size"] for r in rows], [r["p99_beyond_ms"] for r in rows], marker="o", label=f"{label}, p99")
        left.plot([r["size"] for r in rows], [r["p50_beyond_ms"] for r in rows], marker=".", linestyle="--",
                  label=f"{label}, p50")
    left.set_xlabel("simultaneous invocations")
    left.set_ylabel("ms beyond the handler's own 1 s")
    left.set_title("Bursts")
    left.legend()
    rows = data["density"]
    right.plot([r["size"] for r in rows], [r["copies_uss_mib"] for r in rows], marker="o", label="copies, private (USS)")
    right.plot([r["size"] for r in rows], [r["server_rss_mib"] for r in rows], marker="o", label="server, resident")
    right.set_xlabel("restored environments held")
    right.set_ylabel("MiB")
    right.set_title("Density")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", default="50,200,500")
    parser.add_argument("--density", default="100,500,1000")
    parser.add_argument("--quick", action="store_true", help="bursts of 20 and 50, density 10 and 50 (a smoke run)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    bursts = [20, 50] if args.quick else [int(n) for n in args.bursts.split(",")]
    sizes = [10, 50] if args.quick else [int(n) for n in args.density.split(",")]
    data: dict = {"when": utc_now(), "machine": machine_info(), "load_average_at_start": os.getloadavg()}
    data["revision"], data["dirty"] = git_revision()
    data["bursts"] = []
    for size in bursts:
        for snapstart in (True, False):  # interleaved, a fresh server each
            row = burst_row(size, snapstart)
            print(json.dumps(row), flush=True)
            data["bursts"].append(row)
    data["density"] = []
    for size in ([] if 10 in sizes else [10]) + sizes:
        row = density_row(size)
        print(json.dumps(row), flush=True)
        data["density"].append(row)
    baseline = next(r["invoke_p50_ms"] for r in data["density"] if r["size"] == 10)
    data["load_average_at_end"] = os.getloadavg()
    burst_rows = [[r["size"], "SnapStart" if r["snapstart"] else "ordinary", r["failed"], f"{r['wall_beyond_ms']:.0f}",
                   f"{r['p50_beyond_ms'] or 0:.0f}", f"{r['p99_beyond_ms'] or 0:.0f}",
                   f"{r['size'] / max(r['wall_beyond_ms'], 1) * 1000:.0f}"] for r in data["bursts"]]
    density_rows = [[r["size"], r["failed"], f"{r['copies_uss_mib']:.0f}", f"{r['copies_uss_mib'] / r['size']:.2f}",
                     f"{r['server_rss_mib']:.0f}", f"{r['idle_cpu_percent']:.2f}", f"{r['invoke_p50_ms']:.2f}",
                     f"{r['invoke_p50_ms'] / baseline:.2f}x"] for r in data["density"]]
    command = "python -m benchmarks.scale" + (" --quick" if args.quick else f" --bursts {args.bursts} --density {args.density}")
    markdown = (
        f"# Scale on one machine\n\nRevision {data['revision']}{' (dirty)' if data['dirty'] else ''}, {data['when']}; "
        f"load average {data['load_average_at_start'][0]:.1f} at the start, {data['load_average_at_end'][0]:.1f} at the "
        f"end (a shared 2-core machine).\n\n    {command}\n\n"
        "## Bursts\n\nN invocations released at once on a fresh server (concurrency N+20), the handler sleeping 1 s. "
        "Environments per second: N over the wall time beyond the handler's.\n\n"
        + markdown_table(["N", "function", "failed", "wall beyond (ms)", "p50 beyond (ms)", "p99 beyond (ms)",
                          "environments/s"], burst_rows, "rlrrrrr")
        + "\n\n## Density\n\nN restored copies of a SnapStart function made at once, then held idle. USS: the "
        "copies' private memory in all; idle CPU: the server and every copy over "
        f"{IDLE_SECONDS:.0f} s, in % of one core; invoke: 200 sequential invocations, each to an idle copy "
        "(ratio against 10 environments).\n\n"
        + markdown_table(["N", "failed", "copies USS (MiB)", "per copy (MiB)", "server RSS (MiB)", "idle CPU (%)",
                          "invoke p50 (ms)", "vs 10"], density_rows)
        + "\n")
    print(markdown)
    if not args.no_write:
        name = "scale-quick" if args.quick else "scale"
        write_results(name, data, markdown)
        if chart(data, Path(__file__).resolve().parent / "results" / f"{name}.png"):
            print(f"chart: benchmarks/results/{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
