"""The store's one interface on both engines (SQLite and a real PostgreSQL): claims, leases, retries,
finishing with follow-ups, reclaiming a dead worker's events, redrive and purge; what a corrupt or
locked state file gets (a clear error, nothing dropped); `lambdalet events` on a state directory."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import trio

from benchmarks.postgres import PostgresMissing, running_postgres
from runtime_api.store import FAILED, INVOKE, QUEUED, RUNNING, SUCCEEDED, NewEvent, StoreError, open_store
from runtime_api.store.sqlite import StateDirInUse


@pytest.fixture(scope="module")
def postgres_url():
    try:
        with running_postgres() as url:
            yield url
    except PostgresMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path, nursery):
    if request.param == "sqlite":
        opened = await open_store(state_dir=str(tmp_path / "state"))
    else:
        url = request.getfixturevalue("postgres_url")
        opened = await open_store(queue=url)
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:  # the cluster is shared by this module's tests
            connection.execute("DELETE FROM lambdalet_events")
            connection.execute("DELETE FROM lambdalet_event_invoke_configs")
            for table in ("lambdalet_durable_executions", "lambdalet_durable_operations", "lambdalet_durable_events"):
                connection.execute(f"DELETE FROM {table}")
    await nursery.start(opened.write_enqueued)
    yield opened
    await opened.aclose()


def event(number: int, function: str = "worker", at: float = 1000.0) -> NewEvent:
    return NewEvent(id=f"event-{number}", kind=INVOKE, function=function, payload=b'{"n": %d}' % number,
                    request={"traceId": f"trace-{number}"}, enqueued=at, due=at)


async def test_events_are_claimed_once_in_due_order_and_released_for_a_retry(store):
    for number in (2, 1, 3):
        await store.enqueue(event(number, at=1000.0 + number))
    await store.enqueue(event(9, function="other"))
    first = await store.claim(INVOKE, "worker", 2, worker="a", lease=2000.0, now=1010.0)
    assert [claimed.id for claimed in first] == ["event-1", "event-2"]
    assert [claimed.attempts for claimed in first] == [1, 1]
    assert first[0].request == {"traceId": "trace-1"} and first[0].payload == b'{"n": 1}'
    second = await store.claim(INVOKE, "worker", 5, worker="b", lease=2000.0, now=1010.0)
    assert [claimed.id for claimed in second] == ["event-3"]  # nobody holds what another holds
    assert await store.release(first[0], "a", due=1100.0, give_back=False, result="Unhandled")
    assert not await store.release(first[0], "a", due=1100.0, give_back=False, result="Unhandled")  # no longer held
    assert await store.claim(INVOKE, "worker", 5, worker="a", lease=2000.0, now=1050.0) == []  # not due yet
    (again,) = await store.claim(INVOKE, "worker", 5, worker="a", lease=2000.0, now=1100.0)
    assert (again.id, again.attempts, again.result) == ("event-1", 2, "Unhandled")
    assert await store.release(again, "a", due=1100.0, give_back=True, result="throttled")
    (given_back,) = await store.claim(INVOKE, "worker", 5, worker="a", lease=2000.0, now=1100.0)
    assert given_back.attempts == 2  # a throttle does not use an attempt
    assert await store.next_times(INVOKE, "worker") == (None, None)
    assert await store.next_times(INVOKE, "other") == (1000.0, 1000.0)


async def test_finishing_commits_the_follow_ups_with_it_and_only_for_the_holder(store):
    await store.enqueue(event(1))
    (claimed,) = await store.claim(INVOKE, "worker", 1, worker="a", lease=2000.0, now=1000.0)
    follow_up = NewEvent(id="record-1", kind="deliver", function="worker", payload=b"{}", target="file:/x",
                         enqueued=1001.0, due=1001.0)
    assert not await store.finish(claimed, "b", state=FAILED, result="x", now=1001.0, follow_ups=[follow_up])
    assert await store.events(ids=["record-1"]) == []
    assert await store.finish(claimed, "a", state=FAILED, result="RetriesExhausted", now=1001.0, follow_ups=[follow_up])
    (delivery,) = await store.claim("deliver", None, 5, worker="c", lease=2000.0, now=1001.0)
    assert (delivery.id, delivery.target) == ("record-1", "file:/x")
    (failed,) = await store.events(states=(FAILED,))
    assert (failed.id, failed.result, failed.finished) == ("event-1", "RetriesExhausted", 1001.0)


async def test_a_dead_workers_events_go_back_to_the_queue_when_its_lease_runs_out(store):
    await store.enqueue(event(1))
    await store.enqueue(event(2))
    await store.claim(INVOKE, "worker", 1, worker="dead", lease=1500.0, now=1000.0)
    await store.claim(INVOKE, "worker", 1, worker="alive", lease=1500.0, now=1000.0)
    await store.renew("alive", 3000.0)
    assert await store.reclaim(2000.0) == {"worker"}
    (back,) = await store.events(states=(QUEUED,))
    assert (back.id, back.attempts, back.worker) == ("event-1", 1, None)  # its attempt counted
    (still,) = await store.events(states=(RUNNING,))
    assert still.worker == "alive"


async def test_failed_events_are_redriven_as_new_and_finished_ones_purged(store):
    for number in (1, 2):
        await store.enqueue(event(number))
    for claimed in await store.claim(INVOKE, "worker", 2, worker="a", lease=2000.0, now=1000.0):
        await store.finish(claimed, "a", state=FAILED if claimed.id == "event-1" else SUCCEEDED, result="r", now=1001.0)
    assert await store.redrive(["event-1", "event-2"], now=5000.0) == ["event-1"]  # only failed ones
    (redriven,) = await store.events(states=(QUEUED,))
    assert (redriven.attempts, redriven.enqueued, redriven.result) == (0, 5000.0, None)
    assert await store.purge((SUCCEEDED, FAILED, RUNNING)) == 1
    assert [kept.id for kept in await store.events()] == ["event-1"]


async def test_event_invoke_configs_are_kept_by_function_and_qualifier(store):
    await store.put_config("worker", "$LATEST", b'{"MaximumRetryAttempts":0}', 10.0)
    await store.put_config("worker", "$LATEST", b'{"MaximumRetryAttempts":1}', 11.0)
    await store.put_config("worker", "live", b"{}", 12.0)
    assert await store.get_config("worker", "$LATEST") == (b'{"MaximumRetryAttempts":1}', 11.0)
    assert [qualifier for qualifier, _, _ in await store.list_configs("worker")] == ["$LATEST", "live"]
    assert await store.delete_config("worker", "live")
    assert not await store.delete_config("worker", "live")
    assert await store.get_config("other", "$LATEST") is None


async def test_durable_executions_are_written_by_what_changed_and_read_whole(store):
    from runtime_api.store import DurableRecord

    first = DurableRecord("arn:1", "flow", "one", "RUNNING", 10.0, None, b'{"h": 1}',
                          operations=[("execution", 0, b"op0"), ("s1", 1, b"op1")], events=[(1, b"e1"), (2, b"e2")])
    await store.put_execution(first)
    await store.put_execution(DurableRecord("arn:2", "flow", "two", "RUNNING", 11.0, None, b"{}"))
    # A later write: the row, one operation changed, one added, one event added.
    await store.put_execution(DurableRecord("arn:1", "flow", "one", "SUCCEEDED", 10.0, 12.0, b'{"h": 2}',
                                            operations=[("s1", 1, b"op1'"), ("s2", 2, b"op2")], events=[(3, b"e3")]))
    found = await store.get_execution("arn:1")
    assert (found.status, found.ended, found.document) == ("SUCCEEDED", 12.0, b'{"h": 2}')
    assert found.operations == [("execution", 0, b"op0"), ("s1", 1, b"op1'"), ("s2", 2, b"op2")]
    assert found.events == [(1, b"e1"), (2, b"e2"), (3, b"e3")]
    assert await store.get_execution("arn:3") is None
    listed = await store.list_executions(function="flow")
    assert [(r.arn, r.status, r.document) for r in listed] == [("arn:1", "SUCCEEDED", b""), ("arn:2", "RUNNING", b"")]
    assert [r.arn for r in await store.list_executions(function="flow", statuses=("RUNNING",))] == ["arn:2"]
    assert [r.arn for r in await store.list_executions(function="flow", name="one")] == ["arn:1"]


async def test_running_durable_executions_are_held_by_one_host_until_its_lease_runs_out(store):
    from runtime_api.store import DurableRecord

    await store.put_execution(DurableRecord("arn:a", "flow", "a", "RUNNING", 1.0, None, b"{}", worker="host-1",
                                            lease=100.0))
    await store.put_execution(DurableRecord("arn:b", "flow", "b", "RUNNING", 1.0, None, b"{}"))
    await store.put_execution(DurableRecord("arn:c", "flow", "c", "SUCCEEDED", 1.0, 2.0, b"{}"))
    assert await store.claim_executions("host-2", lease=150.0, now=50.0) == ["arn:b"]  # a: host-1's lease holds
    await store.renew_executions("host-1", lease=200.0)
    assert await store.claim_executions("host-2", lease=250.0, now=150.0) == []
    await store.renew_executions("host-2", lease=400.0)
    assert await store.claim_executions("host-2", lease=300.0, now=210.0) == ["arn:a"]  # host-1 stopped renewing


async def test_ended_durable_executions_are_deleted_when_their_retention_runs_out(store):
    from runtime_api.store import DurableRecord

    await store.put_execution(DurableRecord("arn:old", "flow", "old", "SUCCEEDED", 1.0, 2.0, b"{}", expires=100.0,
                                            operations=[("s", 0, b"op")], events=[(1, b"e")]))
    await store.put_execution(DurableRecord("arn:kept", "flow", "kept", "SUCCEEDED", 1.0, 2.0, b"{}", expires=300.0))
    await store.put_execution(DurableRecord("arn:running", "flow", "running", "RUNNING", 1.0, None, b"{}"))
    assert await store.expire_executions(now=200.0) == 1
    assert await store.get_execution("arn:old") is None
    assert [r.arn for r in await store.list_executions(function="flow")] == ["arn:kept", "arn:running"]


async def test_a_second_server_on_a_state_directory_is_refused_naming_the_first(tmp_path):
    first = await open_store(state_dir=str(tmp_path))
    try:
        with pytest.raises(StateDirInUse, match=rf"{tmp_path} is in use by another lambdalet serve \(pid {os.getpid()}\)"):
            await open_store(state_dir=str(tmp_path))
    finally:
        await first.aclose()
    second = await open_store(state_dir=str(tmp_path))  # free again once the first closed
    await second.aclose()


async def test_a_corrupt_state_file_is_an_error_and_is_left_as_it_was(tmp_path):
    corrupt = tmp_path / "queue.sqlite3"
    corrupt.write_bytes(b"this is no database" * 100)
    with pytest.raises(StoreError, match="is not a readable lambdalet store .* it may be corrupt. Nothing was changed"):
        await open_store(state_dir=str(tmp_path))
    assert corrupt.read_bytes() == b"this is no database" * 100


async def test_a_state_file_locked_by_another_program_is_an_error_not_a_lost_event(tmp_path, nursery):
    store = await open_store(state_dir=str(tmp_path))
    await nursery.start(store.write_enqueued)
    other = sqlite3.connect(tmp_path / "queue.sqlite3", isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")  # another program holding the file (sqlite3's shell, a backup)
    try:
        with pytest.raises(StoreError, match="is locked by another program"):
            await store.enqueue(event(1))
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.enqueue(event(2))  # and the store goes on once it is free
    assert [kept.id for kept in await store.events()] == ["event-2"]
    await store.aclose()


def lambdalet(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime_api.cli", *args], capture_output=True, text=True,
                          timeout=120, **options)


def test_lambdalet_serve_on_a_corrupt_state_file_says_so_and_exits_2(tmp_path):
    (tmp_path / "queue.sqlite3").write_bytes(b"garbage" * 200)
    done = lambdalet("serve", "--state-dir", str(tmp_path), "--port", "0")
    assert done.returncode == 2
    assert f"lambdalet: {tmp_path}/queue.sqlite3 is not a readable lambdalet store" in done.stderr


async def test_lambdalet_events_lists_redrives_and_purges_and_only_reads_while_a_server_runs(tmp_path, nursery):
    store = await open_store(state_dir=str(tmp_path))
    await nursery.start(store.write_enqueued)
    for number in (1, 2):
        await store.enqueue(event(number))
    (claimed, _) = await store.claim(INVOKE, "worker", 2, worker="a", lease=2000.0, now=1000.0)
    await store.finish(claimed, "a", state=FAILED, result="RetriesExhausted: ValueError", now=1001.0)

    listed = await trio.to_thread.run_sync(lambda: lambdalet("events", "--state-dir", str(tmp_path)))
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0] == "0 queued  1 in-flight  0 succeeded  1 failed"
    assert "event-1  worker    failed" in listed.stdout and "RetriesExhausted: ValueError" in listed.stdout
    refused = await trio.to_thread.run_sync(
        lambda: lambdalet("events", "--state-dir", str(tmp_path), "redrive", "--all-failed"))
    assert refused.returncode == 1
    assert f"a server (pid {os.getpid()}) runs against {tmp_path}: stop it to redrive" in refused.stderr
    await store.aclose()

    redriven = await trio.to_thread.run_sync(lambda: lambdalet("events", "--state-dir", str(tmp_path), "redrive",
                                                               "event-1", "event-9"))
    assert redriven.returncode == 1  # event-9 is not there
    assert redriven.stdout == "1 event back in the queue\n"
    assert "event-9: no failed event with this id" in redriven.stderr
    shown = await trio.to_thread.run_sync(lambda: lambdalet("events", "--state-dir", str(tmp_path), "--json",
                                                            "--state", "queued"))
    assert '"id": "event-1"' in shown.stdout and '"attempts": 0' in shown.stdout
    purged = await trio.to_thread.run_sync(lambda: lambdalet("events", "--state-dir", str(tmp_path), "purge",
                                                             "--state", "queued"))
    assert purged.stdout == "1 event deleted\n"


async def test_a_config_one_host_changes_is_the_one_another_host_applies(postgres_url, nursery):
    first, second = await open_store(queue=postgres_url), await open_store(queue=postgres_url)
    try:
        await nursery.start(second.write_enqueued)
        await first.listen()
        await second.put_config("shared", "$LATEST", b'{"MaximumRetryAttempts":2}', 1.0)
        assert (await first.get_config("shared", "$LATEST"))[0] == b'{"MaximumRetryAttempts":2}'  # now kept in memory
        await second.put_config("shared", "$LATEST", b'{"MaximumRetryAttempts":0}', 2.0)
        await second.enqueue(event(7, function="shared"))
        with trio.fail_after(30):
            assert await first.notifications() == {"shared"}  # the config's change was heard on the way
        assert (await first.get_config("shared", "$LATEST"))[0] == b'{"MaximumRetryAttempts":0}'
    finally:
        await first.aclose()
        await second.aclose()
