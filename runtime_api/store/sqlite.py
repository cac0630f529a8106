"""The embedded store: one SQLite file in WAL mode under the state directory, used by one
`lambdalet serve` at a time.

The server holds an exclusive lock on the state directory (`flock` on its lock file) for as long as
it runs, so a second server on the same directory is refused at start-up, and `lambdalet events` can
tell that one runs (it then only reads). Since nobody else can hold an event, the events a crashed
server left `running` are reclaimed at once when the next one opens the store.

Commits are durable before they return (`synchronous=FULL`): an accepted event survives a crash of
the process and of the machine. One connection serves the server, used by one worker thread at a
time (SQLite serialises writers anyway); `:memory:` keeps the store in memory for embedded servers
that need nothing to outlive them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import trio

from .store import Dialect, StoreError

DIALECT = Dialect(placeholder="?", blob="BLOB", real="REAL", skip_locked="")
DATABASE = "queue.sqlite3"
LOCK = "lambdalet.lock"
BUSY_TIMEOUT_MS = 5000


class StateDirInUse(StoreError):
    """Another process holds the state directory (`pid`, as it wrote it)."""

    def __init__(self, message: str, pid: str) -> None:
        super().__init__(message)
        self.pid = pid


def lock_state_dir(directory: Path, *, exclusive: bool) -> int:
    """The state directory's lock file, locked: exclusively by a server (StateDirInUse when a
    server holds it), shared by `lambdalet events` while it changes something. The descriptor;
    closing it releases the lock."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise StateDirInUse(f"{directory} is in use by another lambdalet serve (pid {pid})", pid) from None
        raise StoreError(f"{path}: cannot lock it: {exc.strerror}") from None
    if exclusive:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def server_pid(directory: Path) -> str | None:
    """The pid of the server holding `directory`, or None when none does."""
    if not (directory / LOCK).exists():
        return None
    try:
        os.close(lock_state_dir(directory, exclusive=False))
    except StateDirInUse as exc:
        return exc.pid
    return None


class SqliteEngine:
    dialect = DIALECT
    shared = False

    def __init__(self, path: str, *, lock_fd: int | None = None, read_only: bool = False) -> None:
        self.location = path
        self._lock_fd = lock_fd
        self._begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"  # IMMEDIATE: a writer from the start, no upgrade to fail
        self._limiter = trio.CapacityLimiter(1)
        try:
            if read_only:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
            else:
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if path != ":memory:" and not read_only:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise sqlite3.OperationalError(f"it cannot be put in WAL mode (journal mode {mode})")
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: a corrupt file fails here
        except sqlite3.Error as exc:
            self._release_lock()
            raise StoreError(_explain(path, exc)) from None

    async def transact(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(self._transact, fn, args, limiter=self._limiter)

    def _transact(self, fn: Callable[..., Any], args: tuple) -> Any:
        db = self._db
        try:
            db.execute(self._begin)
            try:
                result = fn(db, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.location, exc)) from None

    def notify(self, connection: Any, functions: Iterable[str]) -> None:
        """One host: it wakes its own dispatchers itself."""

    async def listen(self) -> None:
        pass

    async def notifications(self) -> set[str]:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._db.close, limiter=self._limiter)
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _explain(path: str, exc: sqlite3.Error) -> str:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return (f"{path} is not a readable lambdalet store ({text}): it may be corrupt. Nothing was changed: move it "
                "aside to start with an empty queue, or give another --state-dir")
    if "locked" in text or "busy" in text:
        return (f"{path} is locked by another program ({text}): close what holds it (an open sqlite3 shell, a "
                "backup in progress), then start again")
    if "readonly" in text or "unable to open" in text:
        return f"{path}: cannot open it for writing ({text})"
    return f"{path}: {text}"
