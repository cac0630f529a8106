"""The shared store: a PostgreSQL database any number of `lambdalet serve` processes use at once
(`--queue postgresql://...`), on one machine or many.

Workers claim events with `SELECT ... FOR UPDATE SKIP LOCKED` inside the claiming `UPDATE`, so two
hosts never hold one event, and hold them under leases they renew; a host that dies stops renewing
and its events go back to the queue when their leases run out. A host that makes an event due
says so with `NOTIFY lambdalet_events` in the same transaction (the function's name as payload),
and every host `LISTEN`s, so an event enqueued through one front door starts at once on whichever
host has room.

The driver is psycopg 3, imported only when a PostgreSQL store is opened. Its synchronous API runs
in worker threads (`trio.to_thread`), a small pool of connections with one thread each at most (its
asynchronous API is asyncio's); the LISTEN connection has a thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from .store import NOTIFY_CHANNEL, Dialect, StoreError

DIALECT = Dialect(placeholder="%s", blob="BYTEA", real="DOUBLE PRECISION", skip_locked=" FOR UPDATE SKIP LOCKED",
                  schema_lock="SELECT pg_advisory_xact_lock(7266524)")  # one host creates the tables at a time
POOL_SIZE = 4
LISTEN_WAKE_SECONDS = 0.5  # how often the listening thread looks up, so that stopping never waits long


def shown(url: str) -> str:
    """The URL as messages show it: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError("--queue postgresql://... needs the PostgreSQL driver psycopg: "
                         "pip install 'lambdalet[postgresql]'") from None
    return psycopg


class PostgresEngine:
    dialect = DIALECT
    shared = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = shown(url)
        self._psycopg = _psycopg()
        self._idle: list[Any] = []
        self._limiter = trio.CapacityLimiter(POOL_SIZE)
        self._listener: Any = None
        self._listen_limiter = trio.CapacityLimiter(1)

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.url, autocommit=True, application_name="lambdalet")
        except self._psycopg.Error as exc:
            raise StoreError(f"{self.location}: cannot connect: {str(exc).strip()}") from None

    async def transact(self, fn: Callable[..., Any], *args: Any) -> Any:
        async with self._limiter:  # at most POOL_SIZE threads, so a connection is always idle here
            connection = self._idle.pop() if self._idle else None
            try:
                connection, result = await trio.to_thread.run_sync(self._transact, connection, fn, args)
            except _Broken as broken:
                connection = None
                raise StoreError(f"{self.location}: {broken}") from None
            finally:
                if connection is not None:
                    self._idle.append(connection)
            return result

    def _transact(self, connection: Any, fn: Callable[..., Any], args: tuple) -> tuple[Any, Any]:
        psycopg = self._psycopg
        if connection is None or connection.closed:
            connection = self._connect()
        try:
            with connection.transaction(), connection.cursor() as cursor:  # a cursor: sqlite3's connection verbs
                return connection, fn(cursor, *args)
        except psycopg.OperationalError as exc:  # the connection is gone: the next call makes another
            connection.close()
            raise _Broken(str(exc).strip()) from None
        except psycopg.Error as exc:
            raise StoreError(f"{self.location}: {str(exc).strip()}") from None

    def notify(self, connection: Any, functions: Iterable[str]) -> None:
        for function in functions:
            connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, function))

    async def listen(self) -> None:
        """LISTEN from now on: what is said after this returns is heard by `notifications`."""
        if self._listener is None:
            self._listener = await trio.to_thread.run_sync(self._listen, limiter=self._listen_limiter)

    async def notifications(self) -> set[str]:
        await self.listen()
        while True:
            try:
                found = await trio.to_thread.run_sync(self._wait_notified, limiter=self._listen_limiter)
            except self._psycopg.OperationalError as exc:
                self._listener.close()
                self._listener = None
                raise StoreError(f"{self.location}: the notifications connection broke: {str(exc).strip()}") from None
            if found:
                return found

    def _listen(self) -> Any:
        connection = self._connect()
        connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return connection

    def _wait_notified(self) -> set[str]:
        return {notice.payload for notice in self._listener.notifies(timeout=LISTEN_WAKE_SECONDS)}

    async def aclose(self) -> None:
        connections = [*self._idle, *([self._listener] if self._listener is not None else [])]
        self._idle, self._listener = [], None
        for connection in connections:
            await trio.to_thread.run_sync(connection.close)


class _Broken(Exception):
    """The connection was lost mid-transaction."""
