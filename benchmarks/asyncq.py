"""Asynchronous invocation: how fast Event invocations are accepted (202s per second, each committed
to the queue before its answer), with the embedded SQLite queue and with a PostgreSQL queue shared
by three front doors; and how long an event takes from its 202 to its handler's first line on an
idle function whose environment is warm (and, for reference, what an environment's start costs).

    python -m benchmarks.asyncq [--duration 5] [--connections 32] [--rounds 200]

The load comes from one client process of raw HTTP/1.1 keep-alive connections (trio, a prebuilt
request, a response read to its end), so that the client costs little next to the servers. The
events run while they are accepted: each server serves the function they invoke (concurrency 4).
Results go to benchmarks/results/asyncq.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import (PYTHON, Server, free_port, function_dir, git_revision, machine_info, markdown_table, utc_now,
                     write_results)
from .postgres import running_postgres

HANDLER = """
import os, time

def handler(event, context):
    if "n" in event:
        with open(os.environ["STARTS"], "a") as starts:
            starts.write(f"{event['n']} {time.time()!r}\\n")
    return event
"""
LOAD = r"""
import sys, time, trio
ports, connections, duration = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2]), float(sys.argv[3])
REQUEST = (b"POST /2015-03-31/functions/worker/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"X-Amz-Invocation-Type: Event\r\nContent-Length: 2\r\n\r\n{}")
counts = {"accepted": 0, "other": 0}

async def client(port, deadline):
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = b""
    while trio.current_time() < deadline:
        await stream.send_all(REQUEST)
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(65536)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head.lower() else 0
        while len(buffer) < length:
            buffer += await stream.receive_some(65536)
        buffer = buffer[length:]
        counts["accepted" if head.startswith(b"HTTP/1.1 202") else "other"] += 1
    await stream.aclose()

async def main():
    started = time.perf_counter()
    deadline = trio.current_time() + duration
    async with trio.open_nursery() as nursery:
        for number in range(connections):
            nursery.start_soon(client, ports[number % len(ports)], deadline)
    print(counts["accepted"], counts["other"], time.perf_counter() - started)

trio.run(main)
"""


def serve(name: str, code: Path, work: Path, starts: Path, *where: str) -> Server:
    port = free_port()
    argv = [PYTHON, "-m", "runtime_api.cli", "serve", "--code", str(code), "--handler", "app.handler",
            "--function-name", "worker", "--isolation", "none", "--concurrency", "4", "--env", f"STARTS={starts}",
            "--port", str(port), *where]
    return Server(name, argv, work, port, log_dir=work)


def load(ports: list[int], connections: int, duration: float) -> dict:
    done = subprocess.run([PYTHON, "-c", LOAD, ",".join(map(str, ports)), str(connections), str(duration)],
                          capture_output=True, text=True, check=True)
    accepted, other, seconds = done.stdout.split()
    return {"accepted": int(accepted), "other": int(other), "seconds": float(seconds),
            "per_second": int(accepted) / float(seconds)}


def throughput(servers: list[Server], connections: int, duration: float) -> dict:
    for server in servers:
        server.start()
    try:
        load([server.invoke_port for server in servers], connections, 0.5)  # warm up
        return load([server.invoke_port for server in servers], connections, duration)
    finally:
        for server in servers:
            server.stop()


def start_latency(work: Path, code: Path, rounds: int) -> dict:
    """202 -> the handler's first line, on an idle function with a warm environment; and the first
    event of a fresh server, whose environment starts for it."""
    import http.client

    starts = work / "latency-starts.txt"
    delays, cold = [], None
    with serve("latency", code, work, starts, "--state-dir", str(work / "latency-state")) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.invoke_port)
        for number in range(rounds + 1):
            sent = time.time()
            connection.request("POST", "/2015-03-31/functions/worker/invocations", body=json.dumps({"n": number}),
                               headers={"X-Amz-Invocation-Type": "Event"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 202, answer.status
            while True:  # the handler's own clock says when it started; this only waits for it
                lines = starts.read_text().splitlines() if starts.exists() else []
                if len(lines) > number:
                    break
                time.sleep(0.001)
            started = float(lines[number].split()[1])
            if number == 0:
                cold = started - sent
            else:
                delays.append(started - sent)
            time.sleep(0.01)  # idle again
        connection.close()
    delays.sort()
    return {"rounds": rounds, "p50_ms": statistics.median(delays) * 1000,
            "p90_ms": delays[int(len(delays) * 0.9)] * 1000, "p99_ms": delays[int(len(delays) * 0.99)] * 1000,
            "first_event_with_environment_start_ms": cold * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asyncq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    results: dict = {"machine": machine_info(), "when": utc_now(), "commit": git_revision()[0], "duration_s": args.duration,
                     "connections": args.connections}
    with tempfile.TemporaryDirectory(prefix="lambdalet-asyncq-") as scratch:
        work = Path(scratch)
        code = function_dir(work, HANDLER)
        starts = work / "starts.txt"
        print("latency: 202 -> handler start, idle function", file=sys.stderr)
        results["latency"] = start_latency(work, code, args.rounds)
        print("throughput: SQLite, one front door", file=sys.stderr)
        results["sqlite"] = throughput([serve("sqlite", code, work, starts, "--state-dir", str(work / "state"))],
                                       args.connections, args.duration)
        print("throughput: PostgreSQL, three front doors", file=sys.stderr)
        with running_postgres() as url:
            results["postgresql"] = throughput(
                [serve(f"door{n}", code, work, starts, "--queue", url) for n in range(3)],
                args.connections, args.duration)
    write_results("asyncq", results, render(results))
    print(render(results))
    return 0


def render(data: dict) -> str:
    latency = data["latency"]
    rows = [["SQLite (WAL, synchronous=FULL), 1 front door", f"{data['sqlite']['per_second']:.0f}", "3,000"],
            ["PostgreSQL 15, 3 front doors", f"{data['postgresql']['per_second']:.0f}", "1,000"]]
    return "\n".join([
        "# Asynchronous invocation: accepting events, and an event's way to its handler",
        "",
        f"Measured {data['when']} at commit {data.get('commit', '?')} on {data['machine']['cpu_model'] or 'this machine'} "
        f"({data['machine']['nproc']} cores, load {data['machine']['loadavg'][0]:.2f}); `python -m benchmarks.asyncq`.",
        "",
        f"Event invocations accepted per second (each 202 sent after its event is committed), "
        f"{data['connections']} keep-alive connections for {data['duration_s']:g} s, the events running meanwhile:",
        "",
        markdown_table(["queue", "202s per second", "target"], rows),
        "",
        f"An event's 202 to its handler's first line, idle function, warm environment ({latency['rounds']} events): "
        f"p50 {latency['p50_ms']:.2f} ms, p90 {latency['p90_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms (target: p50 "
        f"≤ 5 ms). The first event of a fresh server, whose environment starts for it: "
        f"{latency['first_event_with_environment_start_ms']:.1f} ms.",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
