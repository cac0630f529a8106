"""SnapStart bursts: many simultaneous invocations of a SnapStart function, each answered by a copy
restored for it, run again and again on a fresh server to find the invocation that fails.

    python -m benchmarks.burst [--runs 20] [--clients 200] [--sleep 1.0] [--isolation standard]

Each run starts `lambdalet serve --snapstart --concurrency <clients + 20> --timeout 30`, releases
`--clients` threads at once (a barrier), each sending one invocation that sleeps `--sleep` seconds in
the handler, and records every answer that is not the handler's own result with the server's log
around it, and how many templates the run built (one, unless a template ended). The handler imports a few standard modules, so that its template holds some memory.
Results go to benchmarks/results/burst.{json,md}: failed invocations per run (the goal is none), and
the wall time and p50/p99 beyond the handler's own sleep.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from .common import (HOST, PYTHON, REPO_ROOT, Server, free_port, function_dir, git_revision, machine_info,
                     markdown_table, percentile, utc_now, write_results)

HANDLER = """
import json, time, decimal, email.mime.text, http.client

def handler(event, context):
    time.sleep(event.get("s", 0))
    return {"ok": True}
"""
PATH = "/2015-03-31/functions/function/invocations"


def invoke(port: int, payload: bytes, barrier: threading.Barrier, answers: list, index: int) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.connect()  # connected before the barrier: the burst is the requests, not the handshakes
        barrier.wait()
        start = time.perf_counter()
        conn.request("POST", PATH, body=payload)
        response = conn.getresponse()
        body = response.read()
        answers[index] = (time.perf_counter() - start, response.status,
                          response.getheader("X-Amz-Function-Error"), body)
    except Exception as error:  # a refused or reset connection is a failed invocation too
        answers[index] = (0.0, 0, type(error).__name__, str(error).encode())
    finally:
        conn.close()


def burst(port: int, clients: int, sleep: float) -> tuple[float, list]:
    payload = json.dumps({"s": sleep}).encode()
    barrier = threading.Barrier(clients + 1)
    answers: list = [None] * clients
    threads = [threading.Thread(target=invoke, args=(port, payload, barrier, answers, i)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, answers


def one_run(root: Path, clients: int, sleep: float, isolation: str | None) -> dict:
    code = function_dir(root, HANDLER)
    port = free_port()
    argv = [PYTHON, "-m", "runtime_api.cli", "serve", "--code", str(code), "--handler", "app.handler",
            "--snapstart", "--concurrency", str(clients + 20), "--timeout", "30", "--port", str(port)]
    if isolation:
        argv += ["--isolation", isolation]
    server = Server("lambdalet", argv, root, port, env={"PYTHONPATH": str(REPO_ROOT)}, log_dir=root)
    with server:
        wall, answers = burst(port, clients, sleep)
        server.snapshot()
    failed = [{"status": status, "function_error": error, "body": body[:400].decode(errors="replace")}
              for _, status, error, body in answers if status != 200 or error or body != b'{"ok": true}']
    beyond = sorted(max(0.0, elapsed - sleep) * 1000 for elapsed, status, error, _ in answers
                    if status == 200 and not error)
    built = (root / "lambdalet.stdout.log").read_text(errors="replace").count("INIT_REPORT")
    log = "\n".join(line for name in ("stderr", "stdout")
                    for line in (root / f"lambdalet.{name}.log").read_text(errors="replace").splitlines()
                    if not line.startswith(("START ", "END ", "REPORT ", "RESTORE_", "INIT_", "  ")))
    return {"failed": failed, "templates_built": built, "wall_beyond_ms": (wall - sleep) * 1000,
            "p50_beyond_ms": percentile(beyond, 50) if beyond else None,
            "p99_beyond_ms": percentile(beyond, 99) if beyond else None,
            "log_tail": log[-4000:] if failed else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--isolation", choices=["none", "standard", "strict"])
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/results alone")
    args = parser.parse_args(argv)
    runs = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lambdalet-burst-") as root:
            run = one_run(Path(root), args.clients, args.sleep, args.isolation)
        runs.append(run)
        print(f"run {number + 1}: {len(run['failed'])} failed, {run['templates_built']} template(s) built, wall +{run['wall_beyond_ms']:.0f} ms, "
              f"p50 +{run['p50_beyond_ms'] or 0:.0f} ms, p99 +{run['p99_beyond_ms'] or 0:.0f} ms", flush=True)
        for failure in run["failed"]:
            print("   ", failure, flush=True)
        if run["failed"]:
            print(run["log_tail"], flush=True)
    total_failed = sum(len(run["failed"]) for run in runs)
    revision, dirty = git_revision()
    data = {"when": utc_now(), "revision": revision, "dirty": dirty, "machine": machine_info(),
            "load_average_at_end": os.getloadavg(),
            "clients": args.clients, "sleep_s": args.sleep, "isolation": args.isolation or "default",
            "runs": runs, "failed_invocations": total_failed}
    rows = [[i + 1, len(run["failed"]), run["templates_built"], f"{run['wall_beyond_ms']:.0f}", f"{run['p50_beyond_ms'] or 0:.0f}",
             f"{run['p99_beyond_ms'] or 0:.0f}"] for i, run in enumerate(runs)]
    markdown = (f"# SnapStart bursts\n\n{args.runs} runs of {args.clients} simultaneous invocations of a SnapStart "
                f"function whose handler sleeps {args.sleep} s, each run on a fresh `lambdalet serve --snapstart "
                f"--concurrency {args.clients + 20}`; isolation {data['isolation']}. Revision {revision}"
                f"{' (dirty)' if dirty else ''}, {data['when']}; load average at the end "
                f"{data['load_average_at_end'][0]:.1f} (the machine was shared with other work).\n\n"
                f"    python -m benchmarks.burst --runs {args.runs} --clients {args.clients} --sleep {args.sleep}"
                f"{' --isolation ' + args.isolation if args.isolation else ''}\n\n"
                f"**Failed invocations: {total_failed}** of {args.runs * args.clients}.\n\n"
                + markdown_table(["run", "failed", "templates built", "wall beyond handler (ms)", "p50 beyond (ms)", "p99 beyond (ms)"],
                                 rows, "rrrrrr") + "\n")
    if not args.no_write:
        write_results("burst", data, markdown)
    print(f"failed invocations: {total_failed} of {args.runs * args.clients}")
    return 1 if total_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
