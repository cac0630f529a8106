"""The store: what outlives a `lambdalet serve` process, written before it is acknowledged.

One interface, `Store`, over two engines: SQLite embedded in one host (sqlite.py) and PostgreSQL
shared by any number of hosts (postgresql.py). Everything that decides what the store holds is here,
in one set of SQL statements both engines run; an engine only connects, runs a transaction in a
worker thread and says what its SQL spells differently (`Dialect`).

What it holds today:

* **events**: a row per thing to do later, claimed by one worker at a time. `kind` says what:
  `invoke`, an asynchronous invocation of `function`; `deliver`, a record (or a dead-letter message)
  on its way to `target`. A later kind (a durable execution's resumption, its timer) is another row
  of the same table, claimed and leased the same way.
* **event invoke configs**: each function's `EventInvokeConfig` by qualifier, as the Lambda API
  sets it, so that every host sharing the store applies the same.
* **durable executions**: each execution of a durable function (runtime_api/durable/execution.py)
  as a row (its state less its operations and history, with its function, name, status and times
  for listing), a row per operation and a row per history event. A change writes the execution's
  row, the operations it changed and the events it added, in one transaction, before it is
  answered: a checkpoint costs what it changed, not the size of the execution.

An event's life: `queued` (waiting until `due`), `running` (claimed by `worker` until `lease`, its
attempt counted when claimed), then back to `queued` (a retry, or a throttle that gives its attempt
back) or finished: `succeeded` or `failed`. A worker that dies leaves its events `running` with a
lease that runs out; `reclaim` puts them back in the queue with their attempt counted, as Lambda
counts an attempt whose host failed. A finished event's follow-ups (its records for destinations,
an invocation of a destination function) are inserted in the same transaction that finishes it,
so none is lost and none is made twice. A worker only changes a row it still holds: an update
naming a row another worker has reclaimed changes nothing, and says so.

Enqueues are committed in groups: every enqueue waiting when the writer is free goes into one
transaction, and each caller returns once it is committed (durable on disk: SQLite in WAL mode with
`synchronous=FULL`, PostgreSQL's commit), so the 202 is sent after the commit and a burst costs one
commit, not one each.

Blocking database calls run in worker threads through `trio.to_thread.run_sync` with a capacity
limiter: the one bridge between the trio host and the database drivers (the standard library's
sqlite3, psycopg's synchronous API; psycopg's asynchronous API is asyncio's).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec
import trio

EVENTS = "lambdalet_events"
CONFIGS = "lambdalet_event_invoke_configs"
DURABLE = "lambdalet_durable_executions"
DURABLE_OPERATIONS = "lambdalet_durable_operations"
DURABLE_EVENTS = "lambdalet_durable_events"
META = "lambdalet_meta"
SCHEMA_VERSION = "1"
NOTIFY_CHANNEL = "lambdalet_events"  # PostgreSQL: what is said when events become due
CONFIG_CHANGED = "config:"  # said with a function's name when its event invoke config changes
GROUP_LIMIT = 1000  # enqueues committed in one transaction at most

INVOKE, DELIVER = "invoke", "deliver"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED)


class StoreError(Exception):
    """The store cannot be used (corrupt, locked, unreachable, or a write failed); the message says
    which store and what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class Dialect:
    """What an engine's SQL spells differently; the statements are otherwise the same."""

    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    blob: str
    real: str
    skip_locked: str  # appended to the SELECT that picks rows to claim
    schema_lock: str | None = None  # taken before the tables are created (hosts starting at once)


class Engine(Protocol):
    dialect: Dialect
    location: str  # for messages: a file, or a URL without its password
    shared: bool  # several hosts may use it at once (leases, notifications)

    async def transact(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(connection, *args)` in one transaction, in a worker thread; StoreError if it fails."""

    def notify(self, connection: Any, functions: Iterable[str]) -> None:
        """Within a transaction: tell the other hosts that these functions have events due."""

    async def listen(self) -> None:
        """Hear what other hosts say from now on."""

    async def notifications(self) -> set[str]:
        """The functions other hosts said have events due, once some have (never, embedded)."""

    async def aclose(self) -> None: ...


class NewEvent(msgspec.Struct, frozen=True):
    id: str
    kind: str
    function: str
    payload: bytes
    request: dict = {}  # how it was asked for: qualifier, trace id, client context, tenant; or a delivery's kind
    target: str | None = None  # a delivery's destination
    enqueued: float = 0.0  # epoch seconds; the event's age counts from here
    due: float = 0.0


class Event(msgspec.Struct, frozen=True):
    """An event as the store holds it."""

    id: str
    kind: str
    function: str
    target: str | None
    payload: bytes
    request: dict
    state: str
    attempts: int
    enqueued: float
    due: float
    lease: float | None = None
    worker: str | None = None
    finished: float | None = None
    result: str | None = None  # how its last attempt went (an error type), or why it finished


class DurableRecord(msgspec.Struct, frozen=True):
    """A durable execution as the store holds it: a document, and what lists and finds it; with
    its operations (id, position, document) and history events (number, document): those changed
    (to write), or all of them, in order (read)."""

    arn: str
    function: str
    name: str
    status: str
    started: float
    ended: float | None
    document: bytes = b""
    worker: str | None = None  # the host that runs it (a new execution's starter), until `lease`
    lease: float | None = None
    expires: float | None = None  # an ended execution's end of retention
    operations: list[tuple[str, int, bytes]] = []
    events: list[tuple[int, bytes]] = []


_COLUMNS = "id, kind, function, target, payload, request, state, attempts, enqueued, due, lease, worker, finished, result"


def _event(row: tuple) -> Event:
    values = list(row)
    values[4] = bytes(values[4])
    values[5] = json.loads(values[5]) if values[5] else {}
    return Event(*values)


class Store:
    """The one interface to the store, whichever engine holds it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.location = engine.location
        self.shared = engine.shared
        self._sql = _Statements(engine.dialect)
        self._sql.notify = engine.notify
        self._pending: list[tuple[NewEvent, trio.Event]] = []
        self._failed: dict[int, BaseException] = {}
        self._wake: trio.Event | None = None  # set when there is something to write (None: no writer)
        self._configs: dict[tuple[str, str], tuple[bytes, float] | None] = {}
        self._config_changes = 0

    async def create(self) -> None:
        """Create the tables if they are not there; StoreError for a store of another version."""
        version = await self.engine.transact(self._sql.create)
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.location} holds lambdalet's store version {version}, and this lambdalet "
                             f"reads version {SCHEMA_VERSION}: use another store for this version")

    async def aclose(self) -> None:
        await self.engine.aclose()

    # -- events ---------------------------------------------------------------------------------

    async def enqueue(self, event: NewEvent) -> None:
        """Commit `event`; returns once it is durable (StoreError if it could not be written: then
        it was not accepted). Enqueues waiting together share a transaction (`write_enqueued`)."""
        if self._wake is None:
            raise StoreError(f"{self.location}: nothing writes enqueued events (Store.write_enqueued is not running)")
        done = trio.Event()
        self._pending.append((event, done))
        self._wake.set()
        await done.wait()
        failure = self._failed.pop(id(done), None)
        if failure is not None:
            raise StoreError(f"{self.location}: the event could not be written: {failure}") from failure

    async def write_enqueued(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Commit what `enqueue` is given, every enqueue waiting in one transaction, until cancelled."""
        self._wake = trio.Event()
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._pending:
                    batch, self._pending = self._pending[:GROUP_LIMIT], self._pending[GROUP_LIMIT:]
                    try:
                        await self.engine.transact(self._sql.insert, [event for event, _ in batch])
                    except Exception as exc:  # not accepted: each caller hears why
                        for _, waiter in batch:
                            self._failed[id(waiter)] = exc
                    for _, waiter in batch:
                        waiter.set()
        finally:
            self._wake = None
            for _, waiter in self._pending:
                self._failed[id(waiter)] = RuntimeError("the server is stopping")
                waiter.set()
            self._pending = []

    async def claim(self, kind: str, function: str | None, limit: int, *, worker: str, lease: float,
                    now: float) -> list[Event]:
        """Up to `limit` due events of this kind (and function), now held by `worker` until `lease`,
        each with its attempt counted."""
        if limit <= 0:
            return []
        return await self.engine.transact(self._sql.claim, kind, function, limit, worker, lease, now)

    async def claim_expired(self, function: str, enqueued_before: float, limit: int, *, worker: str,
                            lease: float) -> list[Event]:
        """Up to `limit` queued invocations of `function` older than their maximum age, held by
        `worker` to be finished without an attempt."""
        return await self.engine.transact(self._sql.claim_expired, function, enqueued_before, limit, worker, lease)

    async def release(self, event: Event, worker: str, *, due: float, give_back: bool, result: str | None) -> bool:
        """Back to the queue until `due` (a retry; with `give_back`, a throttle: its attempt does
        not count). False when `worker` no longer held it."""
        return await self.engine.transact(self._sql.release, event, worker, due, give_back, result)

    async def finish(self, event: Event, worker: str, *, state: str, result: str | None, now: float,
                     follow_ups: list[NewEvent] = ()) -> bool:
        """`succeeded` or `failed`, with its follow-ups enqueued in the same transaction. False (and
        nothing done) when `worker` no longer held it."""
        return await self.engine.transact(self._sql.finish, event, worker, state, result, now, list(follow_ups))

    async def renew(self, worker: str, lease: float) -> None:
        await self.engine.transact(self._sql.renew, worker, lease)

    async def reclaim(self, before: float) -> set[str]:
        """Events whose worker's lease ran out before `before` back to the queue (their attempt
        counted); the functions that have events due because of it."""
        return await self.engine.transact(self._sql.reclaim, before)

    async def next_times(self, kind: str, function: str | None) -> tuple[float | None, float | None]:
        """(the earliest due time, the earliest enqueue time) of the queued events of this kind and function."""
        return await self.engine.transact(self._sql.next_times, kind, function)

    async def events(self, *, states: Iterable[str] = (), function: str | None = None, ids: Iterable[str] = (),
                     limit: int = 1000) -> list[Event]:
        return await self.engine.transact(self._sql.select, tuple(states), function, tuple(ids), limit)

    async def counts(self) -> dict[tuple[str, str, str], int]:
        """{(kind, function, state): how many}."""
        return await self.engine.transact(self._sql.counts)

    async def redrive(self, ids: Iterable[str], now: float) -> list[str]:
        """Failed events back to the queue as new: no attempt made, their age from now. The ids redriven."""
        return await self.engine.transact(self._sql.redrive, tuple(ids), now)

    async def purge(self, states: Iterable[str], function: str | None = None) -> int:
        """Delete events in these states (never a running one)."""
        states = tuple(state for state in states if state != RUNNING)
        return await self.engine.transact(self._sql.purge, states, function) if states else 0

    # -- event invoke configs -------------------------------------------------------------------
    # Read for every event, so kept in memory: a host that changes one says so to the others (in
    # the transaction that changes it), and they forget theirs.

    async def put_config(self, function: str, qualifier: str, config: bytes, now: float) -> None:
        self._forget_config(function)
        await self.engine.transact(self._sql.put_config, function, qualifier, config, now)

    async def get_config(self, function: str, qualifier: str) -> tuple[bytes, float] | None:
        key = (function, qualifier)
        if key in self._configs:
            return self._configs[key]
        changes = self._config_changes
        found = await self.engine.transact(self._sql.get_config, function, qualifier)
        if changes == self._config_changes:  # nothing changed it while it was read
            self._configs[key] = found
        return found

    async def delete_config(self, function: str, qualifier: str) -> bool:
        self._forget_config(function)
        return await self.engine.transact(self._sql.delete_config, function, qualifier)

    def _forget_config(self, function: str) -> None:
        self._config_changes += 1
        for key in [key for key in self._configs if key[0] == function]:
            del self._configs[key]

    async def list_configs(self, function: str) -> list[tuple[str, bytes, float]]:
        return await self.engine.transact(self._sql.list_configs, function)

    # -- durable executions ---------------------------------------------------------------------

    async def put_execution(self, execution: DurableRecord) -> None:
        await self.engine.transact(self._sql.put_execution, execution)

    async def get_execution(self, arn: str) -> DurableRecord | None:
        return await self.engine.transact(self._sql.get_execution, arn)

    async def claim_executions(self, worker: str, lease: float, now: float) -> list[str]:
        """The running executions no host holds (a new one held by its starter, or one whose host's
        lease ran out before `now`), now held by `worker` until `lease`: their ARNs."""
        return await self.engine.transact(self._sql.claim_executions, worker, lease, now)

    async def expire_executions(self, now: float) -> int:
        """Delete the ended executions whose retention ran out before `now` (with their operations
        and history); how many."""
        return await self.engine.transact(self._sql.expire_executions, now)

    async def renew_executions(self, worker: str, lease: float) -> None:
        await self.engine.transact(self._sql.renew_executions, worker, lease)

    async def list_executions(self, *, function: str | None = None, name: str | None = None,
                              statuses: Iterable[str] = (), limit: int = 1000) -> list[DurableRecord]:
        """Oldest first; `document` left empty (GetDurableExecution reads one whole)."""
        return await self.engine.transact(self._sql.list_executions, function, name, tuple(statuses), limit)

    async def listen(self) -> None:
        """Hear what other hosts say from now on (before looking at the queue, so nothing said in
        between is missed)."""
        await self.engine.listen()

    async def notifications(self) -> set[str]:
        """The functions other hosts made events due for, once there are some (configs they
        changed are forgotten here on the way)."""
        while True:
            said = await self.engine.notifications()
            for changed in [item for item in said if item.startswith(CONFIG_CHANGED)]:
                self._forget_config(changed.removeprefix(CONFIG_CHANGED))
            due = {item for item in said if not item.startswith(CONFIG_CHANGED)}
            if due:
                return due


class _Statements:
    """Every statement the store runs, each a function of a connection (run inside a transaction
    by the engine). Written with `?` for parameters; the dialect's placeholder replaces it."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.notify: Callable[[Any, Iterable[str]], None] = lambda connection, functions: None

    def q(self, sql: str) -> str:
        return sql.replace("?", self.dialect.placeholder)

    def create(self, db) -> str:
        d = self.dialect
        if d.schema_lock:
            db.execute(d.schema_lock)
        db.execute(f"""CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)""")
        db.execute(f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, function TEXT NOT NULL, target TEXT,
            payload {d.blob} NOT NULL, request TEXT NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, enqueued {d.real} NOT NULL, due {d.real} NOT NULL,
            lease {d.real}, worker TEXT, finished {d.real}, result TEXT)""")
        db.execute(f"CREATE INDEX IF NOT EXISTS {EVENTS}_due ON {EVENTS} (kind, function, state, due)")
        db.execute(f"CREATE INDEX IF NOT EXISTS {EVENTS}_worker ON {EVENTS} (state, worker)")
        db.execute(f"""CREATE TABLE IF NOT EXISTS {CONFIGS} (
            function TEXT NOT NULL, qualifier TEXT NOT NULL, config TEXT NOT NULL, modified {d.real} NOT NULL,
            PRIMARY KEY (function, qualifier))""")
        db.execute(f"""CREATE TABLE IF NOT EXISTS {DURABLE} (
            arn TEXT PRIMARY KEY, function TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
            started {d.real} NOT NULL, ended {d.real}, document {d.blob} NOT NULL, worker TEXT, lease {d.real},
            expires {d.real})""")
        db.execute(f"CREATE INDEX IF NOT EXISTS {DURABLE}_function ON {DURABLE} (function, started)")
        db.execute(f"CREATE INDEX IF NOT EXISTS {DURABLE}_status ON {DURABLE} (status, lease)")
        db.execute(f"""CREATE TABLE IF NOT EXISTS {DURABLE_OPERATIONS} (
            arn TEXT NOT NULL, id TEXT NOT NULL, position INTEGER NOT NULL, document {d.blob} NOT NULL,
            PRIMARY KEY (arn, id))""")
        db.execute(f"""CREATE TABLE IF NOT EXISTS {DURABLE_EVENTS} (
            arn TEXT NOT NULL, number INTEGER NOT NULL, document {d.blob} NOT NULL, PRIMARY KEY (arn, number))""")
        row = db.execute(self.q(f"SELECT value FROM {META} WHERE key = ?"), ("schema",)).fetchone()
        if row is None:
            db.execute(self.q(f"INSERT INTO {META} (key, value) VALUES (?, ?)"), ("schema", SCHEMA_VERSION))
            return SCHEMA_VERSION
        return row[0]

    def insert(self, db, events: list[NewEvent]) -> None:
        db.executemany(self.q(
            f"INSERT INTO {EVENTS} (id, kind, function, target, payload, request, state, attempts, enqueued, due) "
            f"VALUES (?, ?, ?, ?, ?, ?, '{QUEUED}', 0, ?, ?)"),
            [(e.id, e.kind, e.function, e.target, e.payload, json.dumps(e.request), e.enqueued, e.due)
             for e in events])
        self.notify(db, {e.function if e.kind == INVOKE else "" for e in events})

    def claim(self, db, kind: str, function: str | None, limit: int, worker: str, lease: float,
              now: float) -> list[Event]:
        which = "function = ? AND " if function is not None else ""
        rows = db.execute(self.q(
            f"UPDATE {EVENTS} SET state = '{RUNNING}', attempts = attempts + 1, lease = ?, worker = ? "
            f"WHERE id IN (SELECT id FROM {EVENTS} WHERE kind = ? AND {which}state = '{QUEUED}' AND due <= ? "
            f"ORDER BY due LIMIT ?{self.dialect.skip_locked}) RETURNING {_COLUMNS}"),
            (lease, worker, kind, *([function] if function is not None else []), now, limit)).fetchall()
        return sorted((_event(row) for row in rows), key=lambda event: event.due)

    def claim_expired(self, db, function: str, enqueued_before: float, limit: int, worker: str,
                      lease: float) -> list[Event]:
        rows = db.execute(self.q(
            f"UPDATE {EVENTS} SET state = '{RUNNING}', lease = ?, worker = ? "
            f"WHERE id IN (SELECT id FROM {EVENTS} WHERE kind = '{INVOKE}' AND function = ? AND state = '{QUEUED}' "
            f"AND enqueued < ? LIMIT ?{self.dialect.skip_locked}) RETURNING {_COLUMNS}"),
            (lease, worker, function, enqueued_before, limit)).fetchall()
        return [_event(row) for row in rows]

    def release(self, db, event: Event, worker: str, due: float, give_back: bool, result: str | None) -> bool:
        changed = db.execute(self.q(
            f"UPDATE {EVENTS} SET state = '{QUEUED}', due = ?, attempts = attempts - ?, lease = NULL, worker = NULL, "
            f"result = ? WHERE id = ? AND worker = ? AND state = '{RUNNING}'"),
            (due, 1 if give_back else 0, result, event.id, worker)).rowcount == 1
        if changed:
            self.notify(db, {event.function if event.kind == INVOKE else ""})
        return changed

    def finish(self, db, event: Event, worker: str, state: str, result: str | None, now: float,
               follow_ups: list[NewEvent]) -> bool:
        changed = db.execute(self.q(
            f"UPDATE {EVENTS} SET state = ?, finished = ?, result = ?, lease = NULL, worker = NULL "
            f"WHERE id = ? AND worker = ? AND state = '{RUNNING}'"),
            (state, now, result, event.id, worker)).rowcount == 1
        if changed and follow_ups:
            self.insert(db, follow_ups)
        return changed

    def renew(self, db, worker: str, lease: float) -> None:
        db.execute(self.q(f"UPDATE {EVENTS} SET lease = ? WHERE state = '{RUNNING}' AND worker = ?"), (lease, worker))

    def reclaim(self, db, before: float) -> set[str]:
        rows = db.execute(self.q(
            f"UPDATE {EVENTS} SET state = '{QUEUED}', lease = NULL, worker = NULL "
            f"WHERE state = '{RUNNING}' AND lease < ? RETURNING kind, function"), (before,)).fetchall()
        due = {function if kind == INVOKE else "" for kind, function in rows}
        if due:
            self.notify(db, due)
        return due

    def next_times(self, db, kind: str, function: str | None) -> tuple[float | None, float | None]:
        which = " AND function = ?" if function is not None else ""
        row = db.execute(self.q(f"SELECT MIN(due), MIN(enqueued) FROM {EVENTS} WHERE kind = ? AND state = '{QUEUED}'"
                                + which), (kind, *([function] if function is not None else []))).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def select(self, db, states: tuple[str, ...], function: str | None, ids: tuple[str, ...],
               limit: int) -> list[Event]:
        where, params = self._where(states, function, ids)
        rows = db.execute(self.q(f"SELECT {_COLUMNS} FROM {EVENTS}{where} ORDER BY enqueued LIMIT ?"),
                          (*params, limit)).fetchall()
        return [_event(row) for row in rows]

    def counts(self, db) -> dict[tuple[str, str, str], int]:
        rows = db.execute(f"SELECT kind, function, state, COUNT(*) FROM {EVENTS} GROUP BY kind, function, state")
        return {(kind, function, state): count for kind, function, state, count in rows.fetchall()}

    def redrive(self, db, ids: tuple[str, ...], now: float) -> list[str]:
        where, params = self._where((FAILED,), None, ids)
        rows = db.execute(self.q(
            f"UPDATE {EVENTS} SET state = '{QUEUED}', attempts = 0, enqueued = ?, due = ?, finished = NULL, "
            f"result = NULL{where} RETURNING id, kind, function"), (now, now, *params)).fetchall()
        self.notify(db, {function if kind == INVOKE else "" for _, kind, function in rows})
        return [row[0] for row in rows]

    def purge(self, db, states: tuple[str, ...], function: str | None) -> int:
        where, params = self._where(states, function, ())
        return db.execute(self.q(f"DELETE FROM {EVENTS}{where}"), params).rowcount

    def _where(self, states: tuple[str, ...], function: str | None, ids: tuple[str, ...]) -> tuple[str, list]:
        clauses, params = [], []
        for column, values in (("state", states), ("id", ids)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += values
        if function is not None:
            clauses.append("function = ?")
            params.append(function)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def put_config(self, db, function: str, qualifier: str, config: bytes, now: float) -> None:
        db.execute(self.q(f"DELETE FROM {CONFIGS} WHERE function = ? AND qualifier = ?"), (function, qualifier))
        db.execute(self.q(f"INSERT INTO {CONFIGS} (function, qualifier, config, modified) VALUES (?, ?, ?, ?)"),
                   (function, qualifier, config.decode(), now))
        self.notify(db, {CONFIG_CHANGED + function})

    def get_config(self, db, function: str, qualifier: str) -> tuple[bytes, float] | None:
        row = db.execute(self.q(f"SELECT config, modified FROM {CONFIGS} WHERE function = ? AND qualifier = ?"),
                         (function, qualifier)).fetchone()
        return (row[0].encode(), row[1]) if row else None

    def delete_config(self, db, function: str, qualifier: str) -> bool:
        self.notify(db, {CONFIG_CHANGED + function})
        return db.execute(self.q(f"DELETE FROM {CONFIGS} WHERE function = ? AND qualifier = ?"),
                          (function, qualifier)).rowcount == 1

    def list_configs(self, db, function: str) -> list[tuple[str, bytes, float]]:
        rows = db.execute(self.q(f"SELECT qualifier, config, modified FROM {CONFIGS} WHERE function = ? "
                                 "ORDER BY qualifier"), (function,)).fetchall()
        return [(qualifier, config.encode(), modified) for qualifier, config, modified in rows]


    def put_execution(self, db, record: DurableRecord) -> None:
        db.execute(self.q(
            f"INSERT INTO {DURABLE} (arn, function, name, status, started, ended, document, worker, lease, expires) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (arn) DO UPDATE SET status = excluded.status, "
            "ended = excluded.ended, document = excluded.document, expires = excluded.expires"),
            (record.arn, record.function, record.name, record.status, record.started, record.ended, record.document,
             record.worker, record.lease, record.expires))
        if record.operations:
            db.executemany(self.q(
                f"INSERT INTO {DURABLE_OPERATIONS} (arn, id, position, document) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (arn, id) DO UPDATE SET document = excluded.document"),
                [(record.arn, id, position, document) for id, position, document in record.operations])
        if record.events:
            db.executemany(self.q(f"INSERT INTO {DURABLE_EVENTS} (arn, number, document) VALUES (?, ?, ?)"),
                           [(record.arn, number, document) for number, document in record.events])

    def get_execution(self, db, arn: str) -> DurableRecord | None:
        row = db.execute(self.q(f"SELECT arn, function, name, status, started, ended, document FROM {DURABLE} "
                                "WHERE arn = ?"), (arn,)).fetchone()
        if row is None:
            return None
        operations = db.execute(self.q(f"SELECT id, position, document FROM {DURABLE_OPERATIONS} WHERE arn = ? "
                                       "ORDER BY position"), (arn,)).fetchall()
        events = db.execute(self.q(f"SELECT number, document FROM {DURABLE_EVENTS} WHERE arn = ? ORDER BY number"),
                            (arn,)).fetchall()
        return DurableRecord(*row[:6], bytes(row[6]),
                             operations=[(id, position, bytes(document)) for id, position, document in operations],
                             events=[(number, bytes(document)) for number, document in events])

    def claim_executions(self, db, worker: str, lease: float, now: float) -> list[str]:
        rows = db.execute(self.q(
            f"UPDATE {DURABLE} SET worker = ?, lease = ? WHERE arn IN (SELECT arn FROM {DURABLE} "
            f"WHERE status = 'RUNNING' AND (lease IS NULL OR lease < ?){self.dialect.skip_locked}) RETURNING arn"),
            (worker, lease, now)).fetchall()
        return [row[0] for row in rows]

    def expire_executions(self, db, now: float) -> int:
        arns = [row[0] for row in db.execute(self.q(f"SELECT arn FROM {DURABLE} WHERE expires < ?"), (now,)).fetchall()]
        for table in (DURABLE_OPERATIONS, DURABLE_EVENTS, DURABLE):
            db.executemany(self.q(f"DELETE FROM {table} WHERE arn = ?"), [(arn,) for arn in arns])
        return len(arns)

    def renew_executions(self, db, worker: str, lease: float) -> None:
        db.execute(self.q(f"UPDATE {DURABLE} SET lease = ? WHERE worker = ? AND status = 'RUNNING'"), (lease, worker))

    def list_executions(self, db, function: str | None, name: str | None, statuses: tuple[str, ...],
                        limit: int) -> list[DurableRecord]:
        clauses, params = [], []
        for column, value in (("function", function), ("name", name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = db.execute(self.q(f"SELECT arn, function, name, status, started, ended FROM {DURABLE}{where} "
                                 "ORDER BY started LIMIT ?"), (*params, limit)).fetchall()
        return [DurableRecord(*row) for row in rows]


def now() -> float:
    """Wall-clock time, as every host sharing a store reads it."""
    return time.time()
