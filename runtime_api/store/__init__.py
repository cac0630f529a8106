"""What outlives a `lambdalet serve` process: queued asynchronous invocations and the records on
their way to destinations, and each function's event invoke config (store.py: the one interface;
sqlite.py, postgresql.py: its two engines).

    store = await open_store(state_dir="~/.local/state/lambdalet")      # SQLite, one host
    store = await open_store(queue="postgresql://lambdalet@db/lambdalet")  # PostgreSQL, shared
"""

from __future__ import annotations

import os
from pathlib import Path

from .store import (DELIVER, DurableRecord, FAILED, INVOKE, QUEUED, RUNNING, STATES, SUCCEEDED, Event, NewEvent, Store,
                    StoreError, now)

__all__ = ["DELIVER", "DurableRecord", "FAILED", "INVOKE", "QUEUED", "RUNNING", "STATES", "SUCCEEDED", "Event", "NewEvent", "Store",
           "StoreError", "default_state_dir", "now", "open_store"]

MEMORY = ":memory:"


def default_state_dir(environ: dict[str, str] | None = None) -> Path:
    """The user's state directory (the XDG Base Directory Specification's `$XDG_STATE_HOME`, else
    `~/.local/state`), lambdalet's folder in it."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "lambdalet"


def is_shared(queue: str | None) -> bool:
    return queue is not None and queue.startswith(("postgresql://", "postgres://"))


async def open_store(*, state_dir: str | None = None, queue: str | None = None, read_only: bool = False) -> Store:
    """The store a server (or `lambdalet events`) uses: `queue` a PostgreSQL URL, else SQLite under
    `state_dir` (`:memory:`: in memory, nothing outlives the process). A server holds the state
    directory's lock while it runs (StateDirInUse for a second one); `read_only` takes no lock and
    writes nothing. StoreError, saying what to do, when it cannot be used."""
    if queue is not None:
        if not is_shared(queue):
            raise StoreError(f"--queue {queue}: a PostgreSQL URL is expected (postgresql://user@host:port/database); "
                             "without --queue, events are kept in SQLite under --state-dir")
        from .postgresql import PostgresEngine

        store = Store(PostgresEngine(queue))
    elif state_dir == MEMORY:
        from .sqlite import SqliteEngine

        store = Store(SqliteEngine(MEMORY))
    else:
        from .sqlite import DATABASE, SqliteEngine, lock_state_dir

        directory = Path(state_dir) if state_dir is not None else default_state_dir()
        path = directory / DATABASE
        if read_only:
            if not path.exists():
                raise StoreError(f"{path}: no store here yet (no lambdalet serve has used {directory})")
            store = Store(SqliteEngine(str(path), read_only=True))
            return store
        try:
            lock = lock_state_dir(directory, exclusive=True)
        except OSError as exc:
            raise StoreError(f"{directory}: cannot use it as the state directory: {exc.strerror}") from None
        store = Store(SqliteEngine(str(path), lock_fd=lock))
    try:
        await store.create()
    except BaseException:
        await store.aclose()
        raise
    return store
