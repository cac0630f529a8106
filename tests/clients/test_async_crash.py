"""No accepted Event invocation is lost when `lambdalet serve` is killed: 500 events accepted, the
server killed with SIGKILL while they run, and every event runs at least once after a restart (or
on the servers still running, with a PostgreSQL queue shared by three). The handler writes each
request id it sees to a file, so a test can tell which events ran twice; each of those must be one
the store held as in flight when the server was killed (a crash mid-invocation is the only
second run Lambda's at-least-once delivery allows besides a retry, and these handlers do not fail).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

from benchmarks.common import Server, free_port, kill_tree
from benchmarks.postgres import PostgresMissing, running_postgres
from helpers import wait_until, write_function
from runtime_api.store import RUNNING, STATES, open_store

EVENTS = 500
HANDLER = """
import os, time

def handler(event, context):
    with open(os.environ["SEEN"], "a") as seen:
        seen.write(context.aws_request_id + "\\n")
    time.sleep(0.05)
    return event
"""


def serve(tmp_path: Path, name: str, *where: str) -> Server:
    port = free_port()
    code = write_function(tmp_path / "code", HANDLER)
    argv = [sys.executable, "-m", "runtime_api.cli", "serve", "--code", str(code), "--handler", "app.handler",
            "--function-name", "worker", "--isolation", "none", "--concurrency", "4", "--env",
            f"SEEN={tmp_path / 'seen.txt'}", "--port", str(port), "--async-time-scale", "0.01", *where]
    return Server(name, argv, tmp_path, port, log_dir=tmp_path)


def enqueue(ports: list[int], count: int) -> list[str]:
    """`count` Event invocations through the front doors in turn, each answered 202; their ids."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in ports]
    accepted = []
    try:
        for number in range(count):
            connection = connections[number % len(connections)]
            connection.request("POST", "/2015-03-31/functions/worker/invocations", body=json.dumps({"n": number}),
                               headers={"X-Amz-Invocation-Type": "Event"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 202
            accepted.append(answer.getheader("X-Amzn-RequestId"))
    finally:
        for connection in connections:
            connection.close()
    return accepted


def seen(tmp_path: Path) -> list[str]:
    path = tmp_path / "seen.txt"
    return path.read_text().split() if path.exists() else []



def kill(server: Server, **where) -> set[str]:
    """SIGKILL, as a crash: the server gets no chance to finish anything. The events the store
    holds as in flight then (before another server's lease check can take them over)."""
    server.snapshot()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    try:
        return stored(**where)[RUNNING]
    finally:
        kill_tree(list(server.known.values()))  # what it had started, orphaned


def stored(**where) -> dict[str, set[str]]:
    """The ids of the events the store holds, by state."""
    async def read():
        store = await open_store(read_only="state_dir" in where, **where)
        try:
            return {state: {event.id for event in await store.events(states=(state,), limit=10 * EVENTS)}
                    for state in STATES}
        finally:
            await store.aclose()

    return trio.run(read)


def check_at_least_once(accepted: list[str], ran: list[str], in_flight: set[str]) -> None:
    counts = Counter(ran)
    assert set(accepted) <= set(counts), f"{len(set(accepted) - set(counts))} accepted events never ran"
    twice = {request_id for request_id, count in counts.items() if count > 1}
    assert twice <= in_flight, f"run twice but not in flight at the kill: {sorted(twice - in_flight)}"


def test_a_server_killed_while_events_run_loses_none_of_them(tmp_path):
    state = ["--state-dir", str(tmp_path / "state")]
    server = serve(tmp_path, "first", *state).start()
    try:
        accepted = enqueue([server.invoke_port], EVENTS)
        wait_until(lambda: len(seen(tmp_path)) >= 50, "50 events to start")
        kill(server, state_dir=str(tmp_path / "state"))
    finally:
        server.stop()
    at_kill = stored(state_dir=str(tmp_path / "state"))
    assert set().union(*at_kill.values()) == set(accepted)  # every accepted event is in the store
    assert at_kill["queued"], "the kill came after the queue was empty: nothing was tested"
    ran_before = len(seen(tmp_path))
    with serve(tmp_path, "second", *state) as again:
        wait_until(lambda: len(stored(state_dir=str(tmp_path / "state"))["succeeded"]) == EVENTS,
                   "every event to succeed")
        if at_kill[RUNNING]:
            assert f"({len(at_kill[RUNNING])} left running by a server that stopped: they run again)" in \
                again.stderr_tail(10_000)
    check_at_least_once(accepted, seen(tmp_path), at_kill[RUNNING])
    assert len(seen(tmp_path)) > ran_before  # the restarted server ran what was left


def test_three_servers_sharing_a_postgresql_queue_lose_nothing_when_one_is_killed(tmp_path):
    try:
        postgres = running_postgres()
        url = postgres.__enter__()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    try:
        where = ["--queue", url, "--queue-lease", "3"]
        servers = [serve(tmp_path, f"door{number}", *where) for number in range(3)]
        try:
            for server in servers:
                server.start()
            accepted = enqueue([server.invoke_port for server in servers], EVENTS)
            wait_until(lambda: len(seen(tmp_path)) >= 50, "50 events to start")
            in_flight = kill(servers[0], queue=url)
            assert in_flight, "nothing ran at the kill: nothing was tested"
            wait_until(lambda: len(stored(queue=url)["succeeded"]) == EVENTS, "every event to succeed")
        finally:
            for server in servers:
                server.stop()
        check_at_least_once(accepted, seen(tmp_path), in_flight)
    finally:
        postgres.__exit__(None, None, None)
