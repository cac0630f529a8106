"""Benchmark (not a test): cold start vs SnapStart restore vs warm, ours beside RIE + awslambdaric.

    lambdalet bench [--samples 40] [--handlers trivial,stdlib,boto3] [--python PATH]
    python -m benchmarks.coldstart ...

`--python` runs both sides under another interpreter (lambdalet's server and so its runtime, and
awslambdaric under RIE; it needs trio, h11, msgspec, boto3, awslambdaric and snapshot-restore-py),
e.g. the python3.12 of the provided.al2023 image; its results are named after it.

For three handlers (trivial; standard-library-heavy; boto3 with an S3 client created at init), in
one run, sample by sample interleaved (so the machine's noise falls on every column alike):

* **cold**, ours: `lambdalet serve`, invoke -> response of an environment started for it (spawn,
  init, first invocation);
* **restore**, ours: the same with `snapstart = true`, so the environment is a fork of the
  function's template (restore request -> first response); the platform's own `Restore Duration`
  is recorded beside it;
* **warm**, ours: an environment that already served;
* **cold**, RIE + awslambdaric: a fresh RIE per sample, whose first invoke starts the runtime;
  and RIE's warm invocations for reference (RIE has no snapshots).

Every invoke goes over HTTP to a separate server process, with `X-Amz-Log-Type: Tail`; a sample of
ours counts as cold (restore) only if its REPORT line carries `Init Duration` (`Restore Duration`).
Memory per idle environment: USS (private) and PSS of the runtime process, from smaps_rollup.

Results: benchmarks/results/coldstart.{json,md,png}.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import common, realparts

HOST = common.HOST
# Each handler answers its pid; an event with "hold" keeps it busy that long (idle_memory's copies
# coexist so), the benchmark's own events are empty.
_HANDLER = ("def handler(event, context):\n    if event:\n        time.sleep(event['hold'])\n"
            "    return {'pid': os.getpid()}\n")
HANDLERS = {
    "trivial": "import os, time\n\n" + _HANDLER,
    "stdlib": (
        "import os, time, json, ssl, asyncio, decimal, email.parser, http.client, xml.etree.ElementTree, sqlite3\n"
        "import urllib.request, logging, uuid, datetime, zipfile, csv, hashlib, argparse, typing, dataclasses\n\n"
        + _HANDLER),
    "boto3": "import os, time, boto3\n\ns3 = boto3.client('s3', region_name='us-east-1')\n\n" + _HANDLER,
}
MEMORY_SAMPLES = 5  # environments measured at once per kind, their median reported
INVOKE = "/2015-03-31/functions/{}/invocations"
# Ours are reaped this long after their invocation, so each sample of cold/restore gets a new one.
REAP_AFTER_S = 0.001
MODES = ("cold", "restore", "warm")


def server_config(handlers: list[str], root: Path, port: int) -> Path:
    """One `lambdalet serve` config with, per handler, a cold, a SnapStart and a warm function."""
    lines = [f'host = "{HOST}"', f"port = {port}", ""]
    for name in handlers:
        code = root / name
        code.mkdir(parents=True, exist_ok=True)
        (code / "app.py").write_text(HANDLERS[name])
        # "restored": a SnapStart function whose copies are kept, to measure an idle one's memory
        # (the "restore" function's are reaped as soon as they are idle).
        for mode in (*MODES, "restored"):
            lines += ["[[function]]", f'name = "{name}-{mode}"', f'code = "{code}"', 'handler = "app.handler"',
                      "timeout = 60", "memory = 1024"]
            if mode in ("cold", "restore"):
                lines.append(f"idle_timeout = {REAP_AFTER_S}")
            if mode in ("restore", "restored"):
                lines.append("snapstart = true")
            lines.append("")
    path = root / "lambdalet.toml"
    path.write_text("\n".join(lines))
    return path


def invoke(port: int, function: str, payload: bytes = b"{}") -> tuple[float, dict, str]:
    """(milliseconds, response JSON, the log tail) of one invoke over a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        start = time.perf_counter_ns()
        conn.request("POST", INVOKE.format(function), body=payload, headers={"X-Amz-Log-Type": "Tail"})
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter_ns() - start) / 1e6
        tail = base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode(errors="replace")
    finally:
        conn.close()
    if response.status != 200 or response.getheader("X-Amz-Function-Error"):
        raise RuntimeError(f"{function}: {response.status} {body[:300]!r}")
    return elapsed, json.loads(body), tail


def memory_kib(pid: int) -> dict[str, int]:
    """USS (private clean + dirty) and PSS of one process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return {"uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0), "pss": fields.get("Pss", 0)}


class Rie:
    """A fresh RIE + awslambdaric for one cold sample."""

    def __init__(self, code: Path, log_dir: Path, python: str) -> None:
        invoke_port, api_port = common.free_port(), common.free_port()
        argv = [str(realparts.rie_binary()), "--runtime-interface-emulator-address", f"{HOST}:{invoke_port}",
                "--runtime-api-address", f"{HOST}:{api_port}", python, "-m", "awslambdaric", "app.handler"]
        self.server = common.Server("rie", argv, code, invoke_port, log_dir=log_dir)


def sample_ours(port: int, function: str, mode: str) -> dict | None:
    elapsed, body, tail = invoke(port, function)
    report = next((line for line in tail.splitlines() if line.startswith("REPORT")), "")
    if mode == "cold" and "Init Duration" not in report:
        return None  # an environment not yet reaped served it warm: not a cold sample
    if mode == "restore" and "Restore Duration" not in report:
        return None
    if mode == "warm" and ("Init Duration" in report or "Restore Duration" in report):
        return None
    sample = {"ms": elapsed, "pid": body["pid"]}
    found = re.search(r"(Init|Restore) Duration: ([\d.]+) ms", report)
    if found:
        sample["platform_ms"] = float(found.group(2))
    return sample


def sample_rie(code: Path, log_dir: Path, python: str) -> dict:
    rie = Rie(code, log_dir, python)
    with rie.server:
        cold, body, _ = invoke(rie.server.invoke_port, "function")
        warm = [invoke(rie.server.invoke_port, "function")[0] for _ in range(3)]
        memory = memory_kib(body["pid"])
    return {"cold_ms": cold, "warm_ms": warm, "memory": memory}


def idle_memory(port: int, handler: str) -> dict:
    """USS/PSS of idle environments' runtimes after their first invocation, the median of
    MEMORY_SAMPLES held at once: cold-started ones, and restored copies (beside their template and
    the next staged copy, as a server holds them)."""
    out = {}
    for key, function in (("cold", "warm"), ("restore", "restored")):
        hold = json.dumps({"hold": 0.5}).encode()
        with ThreadPoolExecutor(MEMORY_SAMPLES) as pool:
            pids = {body["pid"] for _, body, _ in pool.map(
                lambda _: invoke(port, f"{handler}-{function}", hold), range(MEMORY_SAMPLES))}
        measured = [memory_kib(pid) for pid in pids]
        out[key] = {field: statistics.median(m[field] for m in measured) for field in ("uss", "pss")}
        out[key]["n"] = len(measured)
    return out


def summarise(values: list[float]) -> dict:
    return common.latency_summary([int(v * 1e6) for v in values])


def run(handlers: list[str], samples: int, log: callable, python: str = common.PYTHON) -> dict:
    common.become_subreaper()
    with tempfile.TemporaryDirectory(prefix="lambdalet-bench-") as root:
        return _run(handlers, samples, log, python, Path(root))


def _run(handlers: list[str], samples: int, log: callable, python: str, root: Path) -> dict:
    port = common.free_port()
    config = server_config(handlers, root, port)
    # PYTHONPATH: this checkout, whichever interpreter runs it.
    ours = common.Server("lambdalet", [python, "-m", "runtime_api.cli", "serve", "--config", str(config)],
                         root, port, env={"PYTHONPATH": str(common.REPO_ROOT)}, log_dir=root)
    results: dict = {name: {"ours": {m: [] for m in MODES}, "rie": {"cold": [], "warm": []}, "skipped": 0}
                     for name in handlers}
    with ours:
        for name in handlers:  # the templates are built at start-up; first invocations warm the caches
            for mode in MODES:
                invoke(port, f"{name}-{mode}")
        memory = {}
        for i in range(samples):
            for name in handlers:
                order = list(MODES) + ["rie"]
                order = order[i % len(order):] + order[:i % len(order)]
                for mode in order:
                    if mode == "rie":
                        rie = sample_rie(root / name, root, python)
                        results[name]["rie"]["cold"].append(rie["cold_ms"])
                        results[name]["rie"]["warm"] += rie["warm_ms"]
                        results[name]["rie_memory"] = rie["memory"]
                        continue
                    sample = None
                    for _ in range(5):
                        sample = sample_ours(port, f"{name}-{mode}", mode)
                        if sample is not None:
                            break
                        results[name]["skipped"] += 1
                        time.sleep(0.02)  # let the environment that served it warm be reaped
                    if sample is not None:
                        results[name]["ours"][mode].append(sample)
            if (i + 1) % 10 == 0:
                log(f"{i + 1}/{samples} rounds")
        for name in handlers:
            memory[name] = idle_memory(port, name)
            memory[name]["rie_cold"] = results[name].pop("rie_memory", None)
    data = {"machine": common.machine_info(), "date": common.utc_now(), "samples": samples,
            "python": common.python_version(python),
            "revision": common.git_revision()[0], "handlers": {}}
    for name in handlers:
        r = results[name]
        entry = {mode: summarise([s["ms"] for s in r["ours"][mode]]) for mode in MODES}
        entry["restore_duration"] = summarise([s["platform_ms"] for s in r["ours"]["restore"]])
        entry["init_duration"] = summarise([s["platform_ms"] for s in r["ours"]["cold"]])
        entry["rie_cold"] = summarise(r["rie"]["cold"])
        entry["rie_warm"] = summarise(r["rie"]["warm"])
        entry["memory_kib"] = memory[name]
        entry["skipped_samples"] = r["skipped"]
        data["handlers"][name] = entry
    return data


def render(data: dict, command: str) -> str:
    rows = []
    for name, e in data["handlers"].items():
        def cell(key: str) -> str:
            s = e[key]
            return f"{s['p50']:.2f} / {s['p90']:.2f} / {s['p99']:.2f}"
        mem = e["memory_kib"]

        def mib(entry: dict | None, key: str) -> str:
            return f"{entry[key] / 1024:.1f}" if entry else "n/a"
        rows.append([name, cell("rie_cold"), cell("cold"), cell("restore"), cell("restore_duration"), cell("warm"),
                     f"{e['rie_cold']['p50'] / e['restore']['p50']:.0f}x",
                     f"{e['cold']['p50'] / e['restore']['p50']:.0f}x",
                     f"{mib(mem.get('rie_cold'), 'uss')} / {mib(mem.get('cold'), 'uss')} / {mib(mem.get('restore'), 'uss')}",
                     f"{mib(mem.get('restore'), 'pss')}"])
    table = common.markdown_table(
        ["handler", "RIE + awslambdaric cold", "ours cold", "ours restore", "Restore Duration (REPORT)",
         "ours warm", "RIE cold / restore", "cold / restore", "USS MiB: RIE cold / ours cold / restored",
         "restored PSS MiB"], rows)
    m = data["machine"]
    return (f"# Cold start vs SnapStart restore vs warm\n\n"
            f"Milliseconds as the caller sees them (invoke sent -> response read, over HTTP), p50 / p90 / p99 of "
            f"{data['samples']} interleaved samples each; {data['date']}, revision {data['revision']}, "
            f"{m.get('nproc')} CPUs ({m.get('cpu_model', '')}), Python {data.get('python', '?')} on both "
            f"sides.\n\n{table}\n\n"
            f"Reproduce: `{command}`\n")


def chart(data: dict, path: Path) -> bool:
    """A PNG of the p50s (log scale), if matplotlib is installed (`pip install -e '.[bench]'`)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(data["handlers"])
    series = [("RIE + awslambdaric cold", "rie_cold"), ("ours cold", "cold"), ("ours restore", "restore"),
              ("ours warm", "warm")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.2
    for i, (label, key) in enumerate(series):
        values = [data["handlers"][n][key]["p50"] for n in names]
        bars = ax.bar([x + (i - 1.5) * width for x in range(len(names))], values, width, label=label)
        ax.bar_label(bars, labels=[f"{v:.1f}" if v < 10 else f"{v:.0f}" for v in values], fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("invoke -> response, p50 (ms, log scale)")
    ax.set_title("Cold start vs SnapStart restore vs warm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lambdalet bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="interleaved rounds (default 40)")
    parser.add_argument("--handlers", default=",".join(HANDLERS), help="comma-separated: trivial,stdlib,boto3")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR, help="where to write the results")
    parser.add_argument("--python", default=common.PYTHON,
                        help="the interpreter of both sides (default: this one); results named after it")
    args = parser.parse_args(argv)
    handlers = [h for h in args.handlers.split(",") if h]
    unknown = [h for h in handlers if h not in HANDLERS]
    if unknown:
        parser.error(f"unknown handlers: {', '.join(unknown)}")

    def log(message: str) -> None:
        print(f"lambdalet bench: {message}", file=sys.stderr, flush=True)

    data = run(handlers, args.samples, log, args.python)
    command = common.command_line("benchmarks.coldstart", argv if argv is not None else sys.argv[1:])
    name = "coldstart" if args.python == common.PYTHON else f"coldstart-python{data['python'].rsplit('.', 1)[0]}"
    json_path, md_path = common.write_results(name, data, render(data, command), args.output)
    png = args.output / f"{name}.png"
    drawn = chart(data, png)
    print(md_path.read_text())
    print(f"written: {json_path}, {md_path}" + (f", {png}" if drawn else " (no PNG: matplotlib is not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
