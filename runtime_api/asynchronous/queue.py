"""Asynchronous invocation: the trio shell around the store and the policy.

`EventQueue.enqueue` commits an Event invocation before its caller answers 202. Then, for each
function served here, a dispatcher claims due events up to the function's concurrency (less what it
already runs), runs each through the server (`run`: the same path a synchronous invocation takes),
and settles it as the policy says: a retry after Lambda's delay, a throttle given back to the queue,
or its end, with its record for a destination and its dead-letter message committed in the same
transaction. Events older than their maximum age are ended while they wait, even while every
environment is busy. One more dispatcher hands records to their destinations (any host may).

What wakes a dispatcher: an event enqueued or released here, an environment of its function
freeing up, the time its next event is due (or expires), and, with a shared store, another host
saying (PostgreSQL's NOTIFY) that it has events due. With a shared store this host also renews the
leases of the events it runs, and puts back in the queue those whose host stopped renewing; an
embedded store has no other host, so what a crashed server left running is put back at start-up.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import trio

from ..store import DELIVER, FAILED, INVOKE, SUCCEEDED, Event, NewEvent, Store, StoreError, now
from . import invoke_config
from .destinations import DeliveryFailed, deliver
from .invoke_config import EventInvokeConfig, parse_target
from .policy import Finish, Policy, Retry, follow_ups

log = logging.getLogger("lambdalet")

LATEST = "$LATEST"
GONE = "gone"  # the function is no longer served here
DELIVERY_CONCURRENCY = 4
SHARED_POLL_SECONDS = 5.0  # with a shared store, look anyway this often (a notification may be missed)
EXPIRE_BATCH = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """What the queue needs of a function served here."""

    name: str
    concurrency: int
    arn: str  # qualified, as its records name it (…:function:name:$LATEST)
    region: str
    dead_letter: str | None = None


Run = Callable[[Event], Awaitable["Response | str"]]  # an attempt: its Response, THROTTLED or GONE


@dataclasses.dataclass(eq=False)
class _Dispatcher:
    served: Served
    scope: trio.CancelScope
    running: int = 0
    throttles: int = 0  # throttles in a row, for the backoff
    changed: trio.Event = dataclasses.field(default_factory=trio.Event)

    def wake(self) -> None:
        self.changed.set()


class EventQueue:
    def __init__(self, store: Store, run: Run, *, policy: Policy = Policy(), lease_seconds: float = 10.0,
                 endpoints: dict[str, str] | None = None, canonical: Callable[[str], str] = lambda name: name) -> None:
        self.store = store
        self.canonical = canonical  # the name a function is dispatched by, for any name it answers to
        self._attempt_run = run
        self.policy = policy
        self.lease_seconds = lease_seconds
        self.endpoints = dict(endpoints or {})
        self.worker = f"{uuid.uuid4()}"
        self._dispatchers: dict[str, _Dispatcher] = {}
        self._deliveries = _Dispatcher(Served("", DELIVERY_CONCURRENCY, "", ""), trio.CancelScope())
        self._nursery: trio.Nursery | None = None
        self.recovered = 0  # events a crashed server had left running, put back at start-up

    # -- the queue's life ---------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch until cancelled; the store is closed when it returns (the queue owns it)."""
        try:
            await self._run(task_status)
        finally:
            with trio.CancelScope(shield=True):
                await self.store.aclose()

    async def _run(self, task_status) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.store.write_enqueued)
            if self.store.shared:
                await self.store.listen()
                nursery.start_soon(self._renew_leases)
                nursery.start_soon(self._reclaim_leases)
                nursery.start_soon(self._listen)
            else:  # nobody else can hold an event: what is running was left by a server that stopped
                running = await self.store.events(states=("running",), limit=1_000_000)
                self.recovered = len(running)
                await self.store.reclaim(math.inf)
            nursery.start_soon(self._dispatch, self._deliveries)
            task_status.started(self)
            await trio.sleep_forever()

    def serve(self, functions: list[Served]) -> None:
        """Dispatch the events of these functions from now on (and of no other)."""
        assert self._nursery is not None, "EventQueue.run is not running"
        wanted = {served.name: served for served in functions}
        for name in [name for name in self._dispatchers if name not in wanted]:
            self._dispatchers.pop(name).scope.cancel()  # its running attempts finish on their own
        for name, served in wanted.items():
            dispatcher = self._dispatchers.get(name)
            if dispatcher is None:
                dispatcher = self._dispatchers[name] = _Dispatcher(served, trio.CancelScope())
                self._nursery.start_soon(self._dispatch, dispatcher)
            else:
                dispatcher.served = served
                dispatcher.wake()

    async def enqueue(self, function: str, payload: bytes, request_id: str, request: dict) -> None:
        """Commit an Event invocation of `function`; StoreError when it could not be."""
        moment = now()
        await self.store.enqueue(NewEvent(id=request_id, kind=INVOKE, function=function, payload=payload,
                                          request=request, enqueued=moment, due=moment))
        self._wake(function)

    def _wake(self, function: str) -> None:
        dispatcher = self._deliveries if function == "" else self._dispatchers.get(function)
        if dispatcher is not None:
            dispatcher.wake()

    async def config(self, function: str, qualifier: str | None = None) -> EventInvokeConfig:
        found = await self.store.get_config(function, qualifier or LATEST)
        return msgspec.json.decode(found[0], type=EventInvokeConfig) if found else invoke_config.DEFAULT

    # -- dispatching ----------------------------------------------------------------------------

    async def _dispatch(self, dispatcher: _Dispatcher) -> None:
        with dispatcher.scope:
            while True:
                dispatcher.changed = trio.Event()
                try:
                    deadline = await self._dispatch_once(dispatcher)
                except StoreError as exc:
                    log.warning("lambdalet: asynchronous invocations: %s (trying again in a second)", exc)
                    deadline = now() + 1.0
                if deadline is None:
                    continue
                with trio.move_on_after(max(0.0, deadline - now())):
                    await dispatcher.changed.wait()

    async def _dispatch_once(self, dispatcher: _Dispatcher) -> float | None:
        """Start what is due; when to look again (None: at once)."""
        served, deliveries = dispatcher.served, dispatcher is self._deliveries
        kind, function = (DELIVER, None) if deliveries else (INVOKE, served.name)
        moment = now()
        config = invoke_config.DEFAULT if deliveries else await self.config(served.name)
        age_limit = self.policy.age_limit(config)
        if not deliveries:
            expired = await self.store.claim_expired(served.name, moment - age_limit, EXPIRE_BATCH, worker=self.worker,
                                                     lease=moment + self.lease_seconds)
            for event in expired:
                finish = Finish(FAILED, "EventAgeExceeded", None, "EventAgeExceeded")
                self._nursery.start_soon(self._end, dispatcher, event, finish)
            if len(expired) == EXPIRE_BATCH:
                return None
        free = served.concurrency - dispatcher.running
        claimed = await self.store.claim(kind, function, free, worker=self.worker, lease=moment + self.lease_seconds,
                                         now=moment)
        for event in claimed:
            dispatcher.running += 1
            self._nursery.start_soon(self._deliver if deliveries else self._attempt, dispatcher, event)
        if claimed and len(claimed) == free:
            return now() + (SHARED_POLL_SECONDS if self.store.shared else math.inf)  # woken when one ends
        due, oldest = await self.store.next_times(kind, function)
        times = [now() + SHARED_POLL_SECONDS if self.store.shared else math.inf]
        if due is not None and dispatcher.running < served.concurrency:
            times.append(due)
        if oldest is not None and not deliveries:
            times.append(oldest + age_limit)
        return min(times)

    async def _attempt(self, dispatcher: _Dispatcher, event: Event) -> None:
        served = dispatcher.served
        try:
            config = await self.config(served.name, event.request.get("qualifier"))
            verdict = self.policy.before_attempt(event, config, now())
            if verdict is not None:  # this claim ran nothing: it is not an attempt
                await self._end(dispatcher, msgspec.structs.replace(event, attempts=event.attempts - 1), verdict)
                return
            outcome = await self._attempt_run(event)
            if outcome == GONE:  # removed while it waited: it stays queued for whoever serves it
                await self.store.release(event, self.worker, due=now(), give_back=True, result="not served here")
                return
            config = await self.config(served.name, event.request.get("qualifier"))  # it may have changed meanwhile
            decision = self.policy.after_attempt(event, config, outcome, now(), dispatcher.throttles)
            if isinstance(decision, Retry):
                dispatcher.throttles = dispatcher.throttles + 1 if decision.give_back else 0
                await self.store.release(event, self.worker, due=now() + decision.delay, give_back=decision.give_back,
                                         result=decision.result)
            else:
                dispatcher.throttles = 0
                await self._end(dispatcher, event, decision)
        except StoreError as exc:  # its lease runs out and it is tried again
            log.warning("lambdalet: event %s of function %s: %s", event.id, served.name, exc)
        finally:
            dispatcher.running -= 1
            dispatcher.wake()

    async def _end(self, dispatcher: _Dispatcher, event: Event, finish: Finish) -> None:
        served = dispatcher.served
        try:
            config = await self.config(served.name, event.request.get("qualifier"))
            moment = now()
            made = [msgspec.structs.replace(made, function=self.canonical(made.function)) if made.kind == INVOKE
                    else made for made in follow_ups(event, finish, config, served.dead_letter,
                                                     function_arn=served.arn, region=served.region, now=moment)]
            if not await self.store.finish(event, self.worker, state=finish.state, result=finish.result, now=moment,
                                           follow_ups=made):
                return  # another host took it over (this one's lease had run out)
        except StoreError as exc:  # still held: its lease runs out and it ends then
            log.warning("lambdalet: event %s of function %s: %s", event.id, served.name, exc)
            return
        if finish.state == FAILED:
            log.warning("lambdalet: event %s of function %s failed (%s, %d attempt%s)%s", event.id, served.name,
                        finish.result, event.attempts, "" if event.attempts == 1 else "s",
                        "".join(f"; sent to {f.target or f.function}" for f in made))
        for follow in made:
            self._wake(follow.function if follow.kind == INVOKE else "")

    async def _deliver(self, dispatcher: _Dispatcher, event: Event) -> None:
        target = parse_target(event.target or "")
        try:
            try:
                if target is None:
                    raise DeliveryFailed(f"{event.target} is not a destination lambdalet can send to")
                await trio.to_thread.run_sync(deliver, target, event.payload, event.request, self.endpoints)
            except DeliveryFailed as exc:
                delay = self.policy.delivery_retry(event)
                if delay is not None:
                    await self.store.release(event, self.worker, due=now() + delay, give_back=False, result=str(exc))
                    return
                log.warning("lambdalet: the record of event %s of function %s could not be delivered: %s",
                            event.request.get("requestId"), event.function, exc)
                await self.store.finish(event, self.worker, state=FAILED, now=now(),
                                        result=f"DestinationDeliveryFailures: {exc}")
                return
            await self.store.finish(event, self.worker, state=SUCCEEDED, now=now(), result="delivered")
        except StoreError as exc:
            log.warning("lambdalet: delivery %s: %s", event.id, exc)
        finally:
            dispatcher.running -= 1
            dispatcher.wake()

    # -- hosts sharing a store ------------------------------------------------------------------

    async def _renew_leases(self) -> None:
        while True:
            await trio.sleep(self.lease_seconds / 3)
            try:
                await self.store.renew(self.worker, now() + self.lease_seconds)
            except StoreError as exc:
                log.warning("lambdalet: cannot renew the leases of the events running here: %s", exc)

    async def _reclaim_leases(self) -> None:
        while True:
            try:
                for function in await self.store.reclaim(now()):
                    self._wake(function)
            except StoreError as exc:
                log.warning("lambdalet: cannot look for events whose host stopped: %s", exc)
            await trio.sleep(self.lease_seconds / 2)

    async def _listen(self) -> None:
        while True:
            try:
                for function in await self.store.notifications():
                    self._wake(function)
            except StoreError as exc:
                log.warning("lambdalet: %s (listening again in a second)", exc)
                await trio.sleep(1.0)
