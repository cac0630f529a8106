"""Durable executions: the trio shell around execution.py's core and the store.

One task per running execution invokes its handler while the core says it is runnable, sleeps
until its next timer or until something pokes it (a callback, a stop, a chained invoke ending),
and ends when the execution does. Every change is written to the store before it is answered
(the checkpoint's answer, the callback's 200), so a server that is killed loses nothing: at
start-up each execution still running is loaded and its task started again, its timers read from
its operations.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import trio

from ..invoke_api import ServiceError
from ..store import DurableRecord, Store, StoreError, now
from .execution import Execution, parse_callback_id
from .wire import (EXECUTION_STATUSES, FAILED, RUNNING, SUCCEEDED, TERMINAL, ErrorObject, HistoryEvent, Operation,
                   OperationUpdate)

log = logging.getLogger("lambdalet")
DAY = 86400.0
EXPIRY_SECONDS = 3600.0  # how often ended executions past their retention are deleted


@dataclasses.dataclass(frozen=True, slots=True)
class Durable:
    """What the service needs of a durable function served here."""

    name: str
    arn: str  # unqualified
    version: str
    execution_timeout: int
    retention_days: int


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """How one invocation of a handler went: its response body, or its error."""

    request_id: str
    body: bytes | None
    error: ErrorObject | None


# The server's side: run one invocation of a function (durable input in, its answer out); find a
# durable function by any name it answers to; and a chained invoke of any function served here
# (its status, result and error).
Invoke = Callable[[str, bytes, str], Awaitable[Answer]]
Find = Callable[[str], "Durable | None"]
Chain = Callable[[str, bytes, "str | None"], Awaitable[tuple[str, "str | None", "ErrorObject | None"]]]


class DurableService:
    def __init__(self, store: Store, *, scale: float = 1.0, lease_seconds: float = 10.0) -> None:
        self.store = store
        self.scale = scale
        # The executions this host runs are its own in the store until its lease runs out; it
        # renews them. With a shared store (PostgreSQL) another host takes over those of a host that
        # stopped renewing; an embedded one has no other host, so all that are running are this one's.
        self.worker = str(uuid.uuid4())
        self.lease_seconds = lease_seconds
        self.find: Find = lambda name: None
        self.invoke: Invoke | None = None
        self.chain: Chain | None = None
        self._running: dict[str, Execution] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._pokes: dict[str, trio.Event] = {}
        self._ended: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled, first starting again what a stopped server left running."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            resumed = await self._take_over(float("inf") if not self.store.shared else now())
            nursery.start_soon(self._expire)
            task_status.started(resumed)
            if not self.store.shared:
                await trio.sleep_forever()
            while True:
                await trio.sleep(self.lease_seconds / 3)
                try:
                    await self.store.renew_executions(self.worker, now() + self.lease_seconds)
                    taken = await self._take_over(now())
                except StoreError as exc:
                    log.warning("lambdalet: durable executions: cannot renew or take over leases: %s", exc)
                    continue
                if taken:
                    log.warning("lambdalet: %d durable execution(s) of a server that stopped go on here", taken)

    async def _expire(self) -> None:
        """Retention: ended executions are deleted `retention_days` after they ended."""
        while True:
            try:
                await self.store.expire_executions(now())
            except StoreError as exc:
                log.warning("lambdalet: durable executions past their retention could not be deleted: %s", exc)
            await trio.sleep(EXPIRY_SECONDS)

    async def _take_over(self, expired_before: float) -> int:
        """Run the executions no host holds any more (an invocation that was running when its host
        stopped runs again, as Lambda retries an invocation whose host failed)."""
        count = 0
        for arn in await self.store.claim_executions(self.worker, now() + self.lease_seconds, expired_before):
            if arn in self._running:
                continue
            execution = from_record(await self.store.get_execution(arn))
            if execution.invocation is not None:
                execution.invocation = None
                execution.runnable = True
            for operation_id, chained in execution.children.items():  # at least once, as Lambda's
                if execution.operations[operation_id].status not in TERMINAL:
                    chained.started = False
            self._adopt(execution)
            count += 1
        return count

    # -- starting -------------------------------------------------------------------------------

    async def start(self, function: Durable, payload: bytes, name: str | None) -> tuple[Execution, bool]:
        """A new execution of `function` (or, for a name already used with the same input, that
        one: (execution, False)). DurableExecutionAlreadyStartedException for a name used with
        another input."""
        text = payload.decode()
        if name is not None:
            for record in await self.store.list_executions(function=function.name, name=name, limit=1):
                existing = await self.execution(record.arn)
                if existing.input_payload != text:
                    raise ServiceError(409, "DurableExecutionAlreadyStartedException",
                                       f"Durable execution {name} was already started with a different input")
                return existing, False
        execution_id = str(uuid.uuid4())
        execution = Execution.begin(
            arn=f"{function.arn}:{function.version}/durable-execution/{name or execution_id}/{execution_id}",
            name=name or execution_id, function=function.name, function_arn=function.arn, version=function.version,
            payload=text, now=now(), execution_timeout=function.execution_timeout,
            retention_days=function.retention_days, scale=self.scale)
        await self._save(execution)
        self._adopt(execution)
        return execution, True

    def _adopt(self, execution: Execution) -> None:
        assert self._nursery is not None, "DurableService.run is not running"
        self._running[execution.arn] = execution
        self._locks.setdefault(execution.arn, trio.Lock())
        self._pokes[execution.arn] = trio.Event()
        self._ended.setdefault(execution.arn, trio.Event())
        self._nursery.start_soon(self._drive, execution)

    async def wait(self, arn: str) -> Execution:
        """The execution once it has ended."""
        ended = self._ended.get(arn)
        if ended is not None:
            await ended.wait()
        return await self.execution(arn)

    # -- one execution's life -------------------------------------------------------------------

    async def _drive(self, execution: Execution) -> None:
        arn = execution.arn
        lock = self._locks[arn]
        try:
            while True:
                async with lock:
                    if execution.fire(now()):
                        await self._save(execution)
                    if execution.done:
                        break
                    for operation_id, chained in execution.children.items():
                        if not chained.started:
                            chained.started = True
                            self._nursery.start_soon(self._chained_invoke, execution, operation_id)
                if execution.runnable:
                    await self._invoke(execution)
                    continue
                due = execution.next_due()
                with trio.move_on_at(trio.current_time() + max(0.0, due - now()) if due is not None else float("inf")):
                    await self._pokes[arn].wait()
                self._pokes[arn] = trio.Event()
        finally:
            self._running.pop(arn, None)
            self._ended.setdefault(arn, trio.Event()).set()

    async def _invoke(self, execution: Execution) -> None:
        assert self.invoke is not None
        request_id = str(uuid.uuid4())
        async with self._locks[execution.arn]:
            started = now()
            durable_input = execution.begin_invocation(request_id, started)
            await self._save(execution)
        answer = await self.invoke(execution.function, msgspec.json.encode(durable_input), request_id)
        async with self._locks[execution.arn]:
            if execution.invocation == request_id or execution.done:
                if execution.invocation == request_id:
                    execution.end_invocation(answer.request_id, started, now(), answer.body, answer.error)
                await self._save(execution)

    def poke(self, arn: str) -> None:
        event = self._pokes.get(arn)
        if event is not None:
            event.set()

    async def _chained_invoke(self, execution: Execution, operation_id: str) -> None:
        """Run a chained invoke to its end: a durable function's execution (named after the
        operation, so a restarted server finds the one it started), or any other function's
        invocation."""
        assert self.chain is not None
        chained = execution.children[operation_id]
        payload = chained.payload.encode() or b"{}"
        target = self.find(chained.function)
        if target is not None:
            child, _ = await self.start(target, payload, f"{execution.execution_id}-{operation_id}"[:64])
            status, result, error = result_of(await self.wait(child.arn))
        else:
            status, result, error = await self.chain(chained.function, payload, chained.tenant_id)
        async with self._locks[execution.arn]:
            execution.chained_invoke_ended(operation_id, now(), status, result=result, error=error)
            await self._save(execution)
        self.poke(execution.arn)

    # -- the data plane -------------------------------------------------------------------------

    async def checkpoint(self, arn: str, token: str, updates: list[OperationUpdate], client_token: str | None) -> dict:
        execution = self._live(arn)
        async with self._locks[arn]:
            response = execution.checkpoint(token, updates, client_token, now())
            await self._save(execution)
        if execution.done or any(not chained.started for chained in execution.children.values()):
            self.poke(arn)
        return response

    async def state(self, arn: str, token: str, marker: str | None, max_items: int | None) -> dict:
        return self._live(arn).state(token, marker, max_items)

    def _live(self, arn: str) -> Execution:
        """A running execution; a token of any other is not good (as Lambda answers a token of
        an execution that has ended)."""
        execution = self._running.get(arn)
        if execution is None:
            raise ServiceError(400, "InvalidParameterValueException", "Invalid checkpoint token")
        return execution

    # -- the control plane ----------------------------------------------------------------------

    async def execution(self, arn: str) -> Execution:
        running = self._running.get(arn)
        if running is not None:
            return running
        record = await self.store.get_execution(arn)
        if record is None:
            raise ServiceError(404, "ResourceNotFoundException", f"Durable execution not found: {arn}")
        return from_record(record)

    async def list(self, function: str, *, name: str | None, statuses: tuple[str, ...],
                   limit: int) -> list[DurableRecord]:
        for status in statuses:
            if status not in EXECUTION_STATUSES:
                raise ServiceError(400, "InvalidParameterValueException", f"Invalid status {status}")
        return await self.store.list_executions(function=function, name=name, statuses=statuses, limit=limit)

    async def stop(self, arn: str, error: ErrorObject | None) -> float:
        execution = self._running.get(arn)
        if execution is None:
            if not (await self.execution(arn)).done:  # ResourceNotFoundException when there is none
                raise elsewhere_error(arn)
            raise ServiceError(400, "InvalidParameterValueException", f"Durable execution {arn} is not running")
        async with self._locks[arn]:
            stopped = now()
            execution.stop(stopped, error)
            await self._save(execution)
        self.poke(arn)
        return stopped

    async def callback(self, callback_id: str, *, result: str | None = None, error: ErrorObject | None = None,
                       heartbeat: bool = False) -> None:
        arn, operation_id = parse_callback_id(callback_id)
        execution = self._running.get(arn)
        if execution is None:
            stored = await self.store.get_execution(arn)
            elsewhere = from_record(stored) if stored is not None else None
            if elsewhere is None or operation_id not in elsewhere.operations:
                raise ServiceError(404, "ResourceNotFoundException", f"Callback {callback_id} not found")
            if not elsewhere.done:
                raise elsewhere_error(arn)
            elsewhere.callback(operation_id, now(), result=result, error=error, heartbeat=heartbeat)  # says why
            raise ServiceError(400, "InvalidParameterValueException", "The callback has already completed")
        async with self._locks[arn]:
            execution.callback(operation_id, now(), result=result, error=error, heartbeat=heartbeat)
            await self._save(execution)
        if not heartbeat:
            self.poke(arn)

    # -- the store ------------------------------------------------------------------------------

    async def _save(self, execution: Execution) -> None:
        """Write what changed since the last write (the caller holds the execution's lock)."""
        changes, events = execution.changes, len(execution.history)
        await self.store.put_execution(to_record(execution, self.worker, now() + self.lease_seconds))
        execution.saved, execution.saved_events = changes, events


def elsewhere_error(arn: str) -> ServiceError:
    """A running execution another server sharing the store runs: only that server changes it."""
    return ServiceError(409, "ResourceConflictException",
                        f"Durable execution {arn} runs on another lambdalet server sharing this store: send this "
                        "to that server")


def to_record(execution: Execution, worker: str, lease: float) -> DurableRecord:
    """The execution's row (held by `worker` until `lease` when it is new), with the operations it
    changed and the events it added since it was last written."""
    header = msgspec.structs.replace(execution, operations={}, history=[], touched={})
    return DurableRecord(
        execution.arn, execution.function, execution.name, execution.status, execution.start, execution.end,
        msgspec.json.encode(header), worker, lease,
        execution.end + execution.retention_days * DAY if execution.end is not None else None,
        [(op.id, position, msgspec.json.encode(op)) for position, op in enumerate(execution.operations.values())
         if execution.touched.get(op.id, 0) > execution.saved],
        [(event.event_id, msgspec.json.encode(event)) for event in execution.history[execution.saved_events:]])


def from_record(record: DurableRecord) -> Execution:
    execution = msgspec.json.decode(record.document, type=Execution)
    operations = [msgspec.json.decode(document, type=Operation) for _, _, document in record.operations]
    execution.operations = {op.id: op for op in operations}
    execution.touched = {op.id: 0 for op in operations}  # every change is written: none is newer than `saved`
    execution.history = [msgspec.json.decode(document, type=HistoryEvent) for _, document in record.events]
    execution.saved, execution.saved_events = execution.changes, len(execution.history)
    return execution


def result_of(execution: Execution) -> tuple[str, str | None, ErrorObject | None]:
    """(status, result, error) of an ended execution, as a chained invoke reports it."""
    return execution.status, execution.result if execution.status == SUCCEEDED else None, (
        execution.error if execution.status != SUCCEEDED else None)


__all__ = ["Answer", "Durable", "DurableService", "FAILED", "result_of"]
