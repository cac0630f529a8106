"""Warm invoke latency and throughput: `lambdalet-rie` against AWS's real RIE, side by side.

    python -m benchmarks.warm            # full run (~2.5 min), writes benchmarks/results/warm.{json,md}
    python -m benchmarks.warm --quick    # < 1 min smoke run (written to warm-quick.{json,md})
    python -m benchmarks.warm --ref HEAD # measure a commit (git archive), not a tree others are editing

Every target serves `def handler(e, c): return e` from a function directory, with the runtime
`python -m awslambdaric app.handler` (and, as extra rows, lambdalet's own `python -m bootstrap`).
The payload is `{"hello":"world"}`; every response is checked against the expected bytes.

Method: measurements are interleaved round-robin across targets (A, B, C, then B, C, A, ...), with
a fresh server process for every measurement, and the median over rounds is reported.
* latency: one keep-alive `http.client` connection, 50 warm-up invokes, then N timed sequential
  invokes; per-round p50/p90/p99/mean; 1-client throughput is N / the time the N invokes took;
  the CPU time the server and its runtime used per timed invoke (from /proc).
* throughput: 4 client processes, one keep-alive connection each, for a fixed duration, counting
  successes and errors; "serialised" clients share a lock so that only one invoke is in flight at a
  time (the only way AWS's RIE survives 4 clients: unsynchronised, it panics and exits with 2).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import common, realparts
from .common import HOST, PYTHON, Server

NAME = "warm"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
PAYLOAD = b'{"hello":"world"}'
EXPECTED = b'{"hello": "world"}'  # awslambdaric's json.dumps; bootstrap/ matches it byte for byte
HEADERS = {"Content-Type": "application/json"}
WARMUP = 50
CLIENT_WARMUP = 10


class BadResponse(Exception):
    pass


# --- targets ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A server + runtime client combination. `server` is "rie", "lambdalet-rie" or "serve"."""

    server: str
    runtime: str = "awslambdaric"
    concurrency: int = 1

    @property
    def label(self) -> str:
        name = {"rie": "RIE", "lambdalet-rie": "lambdalet-rie", "serve": "lambdalet serve"}[self.server]
        if self.server != "rie":
            name += f" (c={self.concurrency})"
        return f"{name} + {self.runtime}"

    @property
    def key(self) -> str:
        return f"{self.server}/{self.runtime}/c{self.concurrency}"

    def runtime_argv(self) -> list[str]:
        return [PYTHON, "-m", self.runtime, "app.handler"]

    def make_server(self, code: Path, log_dir: Path, env: dict[str, str] | None = None) -> Server:
        invoke_port, api_port = common.free_port(), common.free_port()
        env = dict(env or {})
        if self.server == "rie":
            argv = [str(realparts.rie_binary()),
                    "--runtime-interface-emulator-address", f"{HOST}:{invoke_port}",
                    "--runtime-api-address", f"{HOST}:{api_port}", *self.runtime_argv()]
        elif self.server == "lambdalet-rie":
            argv = [PYTHON, "-m", "runtime_api.rie",
                    "--runtime-interface-emulator-address", f"{HOST}:{invoke_port}",
                    "--runtime-api-address", f"{HOST}:{api_port}", *self.runtime_argv()]
            env["LAMBDALET_CONCURRENCY"] = str(self.concurrency)
        else:
            argv = [PYTHON, "-m", "runtime_api.cli", "serve", "--host", HOST, "--port", str(invoke_port),
                    "--code", str(code), "--handler", "app.handler", "--function-name", "function",
                    "--concurrency", str(self.concurrency), "--", *self.runtime_argv()]
        safe = self.key.replace("/", "_")
        return Server(safe, argv, code, invoke_port, env=env, log_dir=log_dir)


@dataclass(frozen=True)
class ThroughputCase:
    target: Target
    clients: int = 4
    serialised: bool = False
    expect_crash: bool = False  # RIE with unsynchronised concurrent clients

    @property
    def label(self) -> str:
        how = "serialised (client-side lock)" if self.serialised else "unsynchronised"
        return f"{self.target.label}, {self.clients} clients {how}"

    @property
    def key(self) -> str:
        return f"{self.target.key}/{self.clients}x/{'lock' if self.serialised else 'free'}"


def bootstrap_available() -> bool:
    return importlib.util.find_spec("bootstrap.__main__") is not None


def plan(extras: bool) -> tuple[list[Target], list[ThroughputCase]]:
    rie = Target("rie")
    lrie1, lrie4 = Target("lambdalet-rie", concurrency=1), Target("lambdalet-rie", concurrency=4)
    latency = [rie, lrie1]
    throughput = [
        ThroughputCase(rie, expect_crash=True),
        ThroughputCase(rie, serialised=True),
        ThroughputCase(lrie1),
        ThroughputCase(lrie4),
    ]
    if extras:
        latency.append(Target("serve", concurrency=4))
        throughput.append(ThroughputCase(Target("serve", concurrency=4)))
        if bootstrap_available():
            latency += [Target("rie", "bootstrap"), Target("lambdalet-rie", "bootstrap", 1)]
            throughput.append(ThroughputCase(Target("lambdalet-rie", "bootstrap", 4)))
    return latency, throughput


# --- clients ----------------------------------------------------------------------------------

def connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(HOST, port, timeout=30)


def invoke(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", INVOKE_PATH, body=PAYLOAD, headers=HEADERS)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200 or body != EXPECTED:
        raise BadResponse(response.status, body[:200])


def measure_latency(port: int, warmup: int, n: int, server: Server | None = None) -> dict:
    """Sequential invokes on one connection. With `server`, also the CPU time the server and its
    runtimes spent per timed invoke: a cost less sensitive than latency to noisy neighbours."""
    conn = connect(port)
    try:
        for _ in range(warmup):
            invoke(conn)
        if server is not None:
            runtimes = [p.pid for p in common.descendants(server.proc.pid)]
            cpu_before = common.cpu_seconds(server.proc.pid), sum(map(common.cpu_seconds, runtimes))
        samples = []
        clock = time.perf_counter_ns
        began = clock()
        for _ in range(n):
            t0 = clock()
            invoke(conn)
            samples.append(clock() - t0)
        elapsed = clock() - began
    finally:
        conn.close()
    summary = common.latency_summary(samples)
    summary["throughput"] = n / (elapsed / 1e9)
    if server is not None and n:
        cpu_after = common.cpu_seconds(server.proc.pid), sum(map(common.cpu_seconds, runtimes))
        summary["server_cpu_us"] = 1e6 * (cpu_after[0] - cpu_before[0]) / n
        summary["runtime_cpu_us"] = 1e6 * (cpu_after[1] - cpu_before[1]) / n
    return summary


def _client(port: int, warmup: int, duration: float, lock, barrier, results) -> None:
    """One client process: warm up, wait for the others, then invoke for `duration` seconds."""
    successes = errors = 0
    bad: dict[str, int] = {}  # status code -> count of wrong answers
    conn = connect(port)

    def once() -> None:
        if lock is None:
            invoke(conn)
        else:
            with lock:
                invoke(conn)

    for _ in range(warmup):
        try:
            once()
        except (OSError, http.client.HTTPException, BadResponse):
            conn.close()
            conn = connect(port)
    barrier.wait(60)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        try:
            once()
        except BadResponse as exc:
            status = str(exc.args[0])
            bad[status] = bad.get(status, 0) + 1
            continue
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = connect(port)
            continue
        if time.monotonic() <= end:
            successes += 1
    conn.close()
    results.put((successes, errors, bad))


def measure_throughput(server: Server, case: ThroughputCase, duration: float) -> dict:
    ctx = multiprocessing.get_context("fork")
    lock = ctx.Lock() if case.serialised else None
    barrier = ctx.Barrier(case.clients + 1)
    results = ctx.SimpleQueue()
    # The crash case starts without client warm-up, so that the crash falls inside the window.
    warmup = 0 if case.expect_crash else CLIENT_WARMUP
    procs = [ctx.Process(target=_client, args=(server.invoke_port, warmup, duration, lock, barrier, results))
             for _ in range(case.clients)]
    for p in procs:
        p.start()
    try:
        barrier.wait(120)
        for p in procs:
            p.join(duration + 60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
    server.snapshot()
    counts = [results.get() for _ in procs if not results.empty()]
    successes = sum(c[0] for c in counts)
    bad: dict[str, int] = {}
    for c in counts:
        for status, k in c[2].items():
            bad[status] = bad.get(status, 0) + k
    return {
        "clients": case.clients,
        "serialised": case.serialised,
        "duration_s": duration,
        "successes": successes,
        "errors": sum(c[1] for c in counts),
        "bad_responses": sum(bad.values()),
        "bad_statuses": bad,
        "clients_reported": len(counts),
        "throughput": successes / duration,
        "server_exit_code": server.proc.poll(),
        "runtimes_seen": server.max_runtimes,
    }


# --- the run ----------------------------------------------------------------------------------

def run_server(target: Target, code: Path, log_dir: Path, env: dict[str, str], body) -> dict:
    """Start a fresh server, run `body` against it, then stop it and everything it started (a
    runtime orphaned by RIE's crash included)."""
    server = target.make_server(code, log_dir, env)
    with server:
        result = body(server)
    strays = [p for p in common.stray_children(set()) if p.pgid != os.getpgrp()]
    result["ready_s"] = server.ready_seconds
    result["exit_code_after_stop"] = server.exit_code
    result["leftover_processes_killed"] = server.leftovers + common.kill_tree(strays)
    return result


def latency_round(target: Target, code: Path, log_dir: Path, env: dict[str, str], n: int) -> dict:
    def body(server: Server) -> dict:
        try:
            return measure_latency(server.invoke_port, WARMUP, n, server)
        except (BadResponse, OSError, http.client.HTTPException) as exc:
            # Recorded, left out of the medians, and shown: a benchmark should not hide a failure.
            return {"failed": f"{type(exc).__name__}: {exc}", "server_stderr_tail": server.stderr_tail(400)}

    return run_server(target, code, log_dir, env, body)


def throughput_round(case: ThroughputCase, code: Path, log_dir: Path, env: dict[str, str], duration: float) -> dict:
    def body(server: Server) -> dict:
        # One sequential warm-up so that the runtime is up (and known, to kill if RIE crashes).
        try:
            measure_latency(server.invoke_port, WARMUP, 0)
        except (BadResponse, OSError, http.client.HTTPException) as exc:
            return {"failed": f"warm-up: {type(exc).__name__}: {exc}", "server_stderr_tail": server.stderr_tail(400)}
        server.snapshot()
        result = measure_throughput(server, case, duration)
        if result["server_exit_code"] is not None:
            result["server_stderr_tail"] = server.stderr_tail(400)
        return result

    return run_server(case.target, code, log_dir, env, body)


def rotate(items: list, r: int) -> list:
    r %= len(items)
    return items[r:] + items[:r]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summarise(latency_runs: dict, throughput_runs: dict, latency: list[Target],
              throughput: list[ThroughputCase]) -> dict:
    lat = {}
    for target in latency:
        runs = [r for r in latency_runs[target.key] if "failed" not in r]
        if not runs:
            lat[target.key] = {"label": target.label, "failed": [r["failed"] for r in latency_runs[target.key]]}
            continue
        lat[target.key] = {
            "label": target.label,
            **{k: common.median([r[k] for r in runs])
               for k in ("p50", "p90", "p99", "mean", "max", "throughput", "server_cpu_us", "runtime_cpu_us")},
            "p50_range": [min(r["p50"] for r in runs), max(r["p50"] for r in runs)],
            "p99_range": [min(r["p99"] for r in runs), max(r["p99"] for r in runs)],
            "ready_ms": 1000 * common.median([r["ready_s"] for r in runs]),
            "rounds": len(runs),
            "failed_rounds": len(latency_runs[target.key]) - len(runs),
        }
    thr = {}
    for case in throughput:
        runs = [r for r in throughput_runs[case.key] if "failed" not in r]
        if not runs:
            thr[case.key] = {"label": case.label, "failed": [r["failed"] for r in throughput_runs[case.key]]}
            continue
        thr[case.key] = {
            "label": case.label,
            "throughput": common.median([r["throughput"] for r in runs]),
            "throughput_runs": [round(r["throughput"], 1) for r in runs],
            "successes": common.median([r["successes"] for r in runs]),
            "errors": common.median([r["errors"] for r in runs]),
            "bad_responses": sum(r["bad_responses"] for r in runs),
            "bad_statuses": _merge([r["bad_statuses"] for r in runs]),
            "server_exit_codes": sorted({r["server_exit_code"] for r in runs}, key=str),
            "runtimes_seen": max(r["runtimes_seen"] for r in runs),
            "rounds": len(runs),
            "failed_rounds": len(throughput_runs[case.key]) - len(runs),
        }
    ratios = {}
    rie, lrie = "rie/awslambdaric/c1", "lambdalet-rie/awslambdaric/c1"
    if "p50" in lat.get(rie, {}) and "p50" in lat.get(lrie, {}):
        ratios["p50_lambdalet_over_rie"] = lat[lrie]["p50"] / lat[rie]["p50"]
        ratios["p99_lambdalet_over_rie"] = lat[lrie]["p99"] / lat[rie]["p99"]
        # The same ratio taken within each round (the two ran minutes apart at most), then the median.
        ratios["p50_lambdalet_over_rie_paired"] = common.median(
            [a["p50"] / b["p50"] for a, b in zip(latency_runs[lrie], latency_runs[rie])
             if "failed" not in a and "failed" not in b])
    serial = "rie/awslambdaric/c1/4x/lock"
    for key, name in (("lambdalet-rie/awslambdaric/c4/4x/free", "throughput_c4_over_rie_serialised"),
                      ("lambdalet-rie/awslambdaric/c1/4x/free", "throughput_c1_over_rie_serialised"),
                      ("lambdalet-rie/bootstrap/c4/4x/free", "throughput_c4_bootstrap_over_rie_serialised")):
        if "throughput" in thr.get(key, {}) and thr.get(serial, {}).get("throughput"):
            ratios[name] = thr[key]["throughput"] / thr[serial]["throughput"]
            ratios[name + "_paired"] = common.median(
                [a["throughput"] / b["throughput"] for a, b in zip(throughput_runs[key], throughput_runs[serial])
                 if "failed" not in a and "failed" not in b and b["throughput"]])
    return {"latency": lat, "throughput": thr, "ratios": ratios}


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def render(data: dict) -> str:
    s, m, cfg = data["summary"], data["machine"], data["config"]
    lat_rows = [[v["label"], f"{v['p50']:.3f}", f"{v['p90']:.3f}", f"{v['p99']:.3f}", f"{v['mean']:.3f}",
                 f"{v['throughput']:.0f}", f"{v['p50_range'][0]:.3f}–{v['p50_range'][1]:.3f}", f"{v['ready_ms']:.0f}",
                 f"{v['server_cpu_us']:.0f}", f"{v['runtime_cpu_us']:.0f}",
                 f"{v['rounds']}" + (f" ({v['failed_rounds']} failed)" if v["failed_rounds"] else "")]
                if "p50" in v else [v["label"], *["failed"] * 9, f"0 ({len(v['failed'])} failed)"]
                for v in s["latency"].values()]
    thr_rows = []
    for v in s["throughput"].values():
        if "throughput" not in v:
            thr_rows.append([v["label"], *["failed"] * 6, f"{len(v['failed'])} rounds failed"])
            continue
        codes = [c for c in v["server_exit_codes"] if c is not None]
        note = f"exited with code {', '.join(map(str, codes))}" if codes else "stayed up"
        wrong = ", ".join(f"{n}× {status}" for status, n in sorted(v["bad_statuses"].items())) or "0"
        if v["failed_rounds"]:
            note += f"; {v['failed_rounds']} round(s) failed"
        thr_rows.append([v["label"], f"{v['throughput']:.0f}", ", ".join(f"{x:.0f}" for x in v["throughput_runs"]),
                         f"{v['successes']:.0f}", f"{v['errors']:.0f}", wrong, v["runtimes_seen"], note])
    r = s["ratios"]
    lines = [
        "# Warm invokes: lambdalet-rie vs AWS's RIE (awslambdaric, `def handler(e, c): return e`)",
        "",
        f"Recorded {data['date']} at lambdalet {data['revision']}"
        + (f" (uncommitted changes in {', '.join(data['uncommitted'])})" if data["uncommitted"] else "")
        + (", exported with `git archive` and measured from that copy." if data["ref"] else
           f", measured from the working tree {Path(data['lambdalet_code'].get('runtime_api', '?')).parent}."),
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, Python {m['python']}; "
        f"load average at start {' '.join(f'{x:.2f}' for x in data['loadavg_start'])}, "
        f"at end {' '.join(f'{x:.2f}' for x in data['loadavg_end'])}. "
        f"The machine is shared with other workers, so single numbers are noisy; compare rows, not runs.",
        f"Versions: RIE from aws-sam-cli {data['versions']['rie_from_aws_sam_cli']}, "
        f"awslambdaric {data['versions']['awslambdaric']}, trio {data['versions']['trio']}, h11 {data['versions']['h11']}.",
        "",
        f"Reproduce: `{data['command']}` (from the repository root; {data['elapsed_s']:.0f} s).",
        "",
        "## 1 client: sequential invokes on one keep-alive connection",
        "",
        f"{cfg['warmup']} warm-up invokes, then {cfg['invokes']} timed, per round; a fresh server each round; "
        f"medians over {cfg['rounds']} interleaved rounds. Latency in ms, throughput in invokes/s; "
        f"\"start\" is server exec → invoke port accepting (not a cold start: runtimes start lazily); "
        f"CPU columns are user+system time of the server process and of its runtime(s) during the timed "
        f"invokes, divided by their number (10 ms clock ticks; less sensitive than latency to other load on the machine).",
        "",
        common.markdown_table(["target", "p50", "p90", "p99", "mean", "invokes/s", "p50 range over rounds",
                               "start (ms)", "server CPU (µs/invoke)", "runtime CPU (µs/invoke)", "rounds"], lat_rows),
        "",
        "## 4 clients: throughput",
        "",
        f"4 client processes, one keep-alive connection each, {cfg['duration_s']:g} s per round after "
        f"{CLIENT_WARMUP} warm-up invokes per client (none in the RIE crash case); medians over "
        f"{cfg['rounds']} interleaved rounds, fresh server each round. \"runtimes\" is the largest number "
        f"of processes the server had started; \"non-200\" counts answers that were not 200 with the expected "
        f"body, by status.",
        "",
        common.markdown_table(["case", "invokes/s", "per round", "successes", "connection errors",
                               "non-200 (all rounds)", "runtimes", "server"], thr_rows, align="lrrrrrrl"),
        "",
        "## Against the targets",
        "",
    ]
    if "p50_lambdalet_over_rie" in r:
        ok = "met" if r["p50_lambdalet_over_rie"] <= 1.0 else "NOT met"
        lines.append(f"* warm p50, lambdalet-rie / RIE (both awslambdaric, c=1): **{r['p50_lambdalet_over_rie']:.2f}** "
                     f"(target ≤ 1.00: {ok}); the same ratio taken within each round, median: "
                     f"{r['p50_lambdalet_over_rie_paired']:.2f}; p99 ratio {r['p99_lambdalet_over_rie']:.2f}.")
    if "throughput_c4_over_rie_serialised" in r:
        ok = "met" if r["throughput_c4_over_rie_serialised"] >= 1.5 else "NOT met"
        lines.append(f"* 4 clients, lambdalet-rie (c=4) / RIE serialised: **{r['throughput_c4_over_rie_serialised']:.2f}x** "
                     f"(target ≥ 1.5x, ceiling 2x on 2 cores: {ok}); within each round, median: "
                     f"{r['throughput_c4_over_rie_serialised_paired']:.2f}x.")
    if "throughput_c1_over_rie_serialised" in r:
        lines.append(f"* 4 clients, lambdalet-rie (c=1, queueing like RIE's single runtime) / RIE serialised: "
                     f"{r['throughput_c1_over_rie_serialised']:.2f}x.")
    if "throughput_c4_bootstrap_over_rie_serialised" in r:
        lines.append(f"* 4 clients, lambdalet-rie (c=4) + bootstrap / RIE serialised: "
                     f"{r['throughput_c4_bootstrap_over_rie_serialised']:.2f}x.")
    if any(v.get("bad_statuses", {}).get("429") for k, v in s["throughput"].items() if k.startswith("serve/")):
        lines.append("* `lambdalet serve` answers some invokes with 429 although 4 clients never exceed its "
                     "concurrency of 4: an environment holds its concurrency slot until its runtime asks for the "
                     "next event, and a client that got its answer can invoke again before that.")
    crashes = sum(1 for runs in data["runs"]["throughput"].values() for r in runs
                  if r.get("server_exit_code") is not None)
    failures = sorted({f"{kind} {key}: {r['failed']}" for kind in ("latency", "throughput")
                       for key, runs in data["runs"][kind].items() for r in runs if "failed" in r})
    unclean = sorted({f"{key} (exit {r['exit_code_after_stop']})" for kind in ("latency", "throughput")
                      for key, runs in data["runs"][kind].items() for r in runs
                      if r.get("server_exit_code") is None and r.get("exit_code_after_stop") not in (0, None)})
    if unclean:
        lines += ["", "Servers that did not exit cleanly on SIGTERM: " + ", ".join(unclean) + "."]
    if failures:
        lines += ["", "Failed rounds (left out of the medians):", *[f"* {f}" for f in failures]]
    lines += ["", f"Hygiene: {data['leftover_processes_killed']} leftover process(es) killed and reaped after the "
              f"servers stopped; {crashes} server crash(es) (each RIE crash orphans its runtime, which is one "
              f"leftover)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (< 1 min)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; --quick 2)")
    parser.add_argument("--invokes", type=int, help="timed sequential invokes per round (default 1000; --quick 200)")
    parser.add_argument("--duration", type=float, help="seconds per throughput run (default 3; --quick 1)")
    parser.add_argument("--no-extras", action="store_true",
                        help="only RIE and lambdalet-rie + awslambdaric (no serve / bootstrap rows)")
    parser.add_argument("--ref", help="measure lambdalet as committed at this git ref (exported to a temporary "
                        "directory and put first on PYTHONPATH) instead of the working tree")
    parser.add_argument("--output", type=Path, default=common.RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    invokes = args.invokes or (200 if args.quick else 1000)
    duration = args.duration or (1.0 if args.quick else 3.0)
    name = NAME + ("-quick" if args.quick else "")

    common.become_subreaper()
    latency, throughput = plan(extras=not args.no_extras)
    started = time.monotonic()
    load_start = list(os.getloadavg())
    latency_runs = {t.key: [] for t in latency}
    throughput_runs = {c.key: [] for c in throughput}
    leftovers = 0
    with tempfile.TemporaryDirectory(prefix="lambdalet-bench-") as tmp:
        code = common.function_dir(Path(tmp))
        realparts.rie_binary()  # fetch before timing anything
        revision, uncommitted = common.git_revision()
        recorded_argv = list(argv)
        # The servers import lambdalet from this tree (or the exported commit), whatever the editable
        # install points at: another checkout may have re-installed it.
        tree = common.REPO_ROOT
        if args.ref:
            tree = Path(tmp) / "lambdalet"
            revision, uncommitted = common.export_tree(args.ref, tree)[:12], []
            # The command to reproduce names the commit measured, not a ref that moves on.
            recorded_argv = [revision if a == args.ref else a for a in argv]
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        measured = common.imported_from(["runtime_api", "bootstrap", "sandbox"], env, code)
        for r in range(rounds):
            for target in rotate(latency, r):
                result = latency_round(target, code, Path(tmp), env, invokes)
                leftovers += result["leftover_processes_killed"]
                latency_runs[target.key].append(result)
                if "failed" in result:
                    log(f"[{r + 1}/{rounds}] {target.label:45s} FAILED: {result['failed']}")
                    continue
                log(f"[{r + 1}/{rounds}] {target.label:45s} p50 {result['p50']:.3f} ms  p99 {result['p99']:.3f} ms  "
                    f"{result['throughput']:.0f}/s")
            for case in rotate(throughput, r):
                result = throughput_round(case, code, Path(tmp), env, duration)
                leftovers += result["leftover_processes_killed"]
                throughput_runs[case.key].append(result)
                if "failed" in result:
                    log(f"[{r + 1}/{rounds}] {case.label:75s} FAILED: {result['failed']}")
                    continue
                log(f"[{r + 1}/{rounds}] {case.label:75s} {result['throughput']:7.0f}/s  ok {result['successes']} "
                    f"err {result['errors']} bad {result['bad_responses']} exit {result['server_exit_code']} "
                    f"runtimes {result['runtimes_seen']}")
    data = {
        "benchmark": NAME,
        "date": common.utc_now(),
        "revision": revision,
        "uncommitted": uncommitted,
        "lambdalet_code": measured,
        "ref": args.ref,
        "command": common.command_line("benchmarks.warm", recorded_argv),
        "elapsed_s": time.monotonic() - started,
        "machine": common.machine_info(),
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "versions": {
            "rie_from_aws_sam_cli": _sam_version(),
            "awslambdaric": common.package_version("awslambdaric"),
            "trio": common.package_version("trio"),
            "h11": common.package_version("h11"),
        },
        "config": {"rounds": rounds, "warmup": WARMUP, "invokes": invokes, "duration_s": duration,
                   "payload": PAYLOAD.decode(), "expected": EXPECTED.decode()},
        "leftover_processes_killed": leftovers,
        "summary": summarise(latency_runs, throughput_runs, latency, throughput),
        "runs": {"latency": latency_runs, "throughput": throughput_runs},
    }
    markdown = render(data)
    json_path, md_path = common.write_results(name, data, markdown, args.output)
    print(markdown)
    log(f"\nwrote {json_path} and {md_path}")
    return 0


def _sam_version() -> str:
    return realparts.SAM_CLI_VERSION


if __name__ == "__main__":
    sys.exit(main())
