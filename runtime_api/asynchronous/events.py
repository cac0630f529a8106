"""`lambdalet events`: what the queue holds, and putting failed events back in it.

    lambdalet events [list] [--state queued|in-flight|succeeded|failed] [--function NAME] [--json]
    lambdalet events show ID
    lambdalet events redrive ID... | --all-failed [--function NAME]
    lambdalet events purge [--state succeeded|failed|queued] [--function NAME]

It reads the store a server uses (`--state-dir`, the same default, or `--queue postgresql://...`).
While a server runs against a SQLite state directory it only reads (the server owns the queue);
redrive and purge need it stopped. A PostgreSQL queue may be changed while servers run: they hear
of a redriven event at once. A redriven event starts over: no attempt made, its age from now.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import trio

from ..store import DELIVER, FAILED, QUEUED, RUNNING, SUCCEEDED, Event, StoreError, default_state_dir, now, open_store

SHOWN = {RUNNING: "in-flight"}  # the states as the command names them
STATE_NAMES = {SHOWN.get(state, state): state for state in (QUEUED, RUNNING, SUCCEEDED, FAILED)}


def add_events_parser(commands) -> None:
    parser = commands.add_parser(
        "events", help="list the queued, in-flight, succeeded and failed Event invocations; redrive; purge",
        description="What the asynchronous invocation queue holds. While a server runs against a SQLite state "
                    "directory, this only reads it; redrive and purge need the server stopped (a PostgreSQL queue "
                    "may be changed while servers run).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state-dir", metavar="DIR", help="the server's --state-dir (default: the same as serve's)")
    where.add_argument("--queue", metavar="postgresql://...", help="the servers' shared --queue")
    parser.add_argument("action", nargs="?", default="list", choices=["list", "show", "redrive", "purge"])
    parser.add_argument("ids", nargs="*", metavar="ID", help="event ids (show, redrive)")
    parser.add_argument("--state", action="append", default=[], choices=list(STATE_NAMES),
                        help="only events in this state (repeatable); purge: which to delete (default: succeeded "
                             "and failed)")
    parser.add_argument("--function", metavar="NAME", help="only this function's events")
    parser.add_argument("--all-failed", action="store_true", help="redrive: every failed event (of --function)")
    parser.add_argument("--limit", type=int, default=1000, help="list at most this many (default 1000)")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per event")


def events(args: argparse.Namespace) -> int:
    try:
        return trio.run(_events, args)
    except StoreError as exc:
        print(f"lambdalet events: {exc}", file=sys.stderr)
        return 2


async def _events(args: argparse.Namespace) -> int:
    states = [STATE_NAMES[name] for name in args.state]
    changes = args.action in ("redrive", "purge")
    if args.action in ("show", "redrive") and not args.ids and not args.all_failed:
        print(f"lambdalet events {args.action}: give the event ids" + (" (or --all-failed)" if changes else ""),
              file=sys.stderr)
        return 2
    if changes and args.queue is None:
        from ..store.sqlite import server_pid

        directory = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
        pid = server_pid(directory)
        if pid is not None:
            print(f"lambdalet events: a server (pid {pid}) runs against {directory}: stop it to {args.action} "
                  "(while it runs, lambdalet events only reads)", file=sys.stderr)
            return 1
    store = await open_store(state_dir=args.state_dir and str(Path(args.state_dir).expanduser()), queue=args.queue,
                             read_only=not changes and args.queue is None)
    try:
        if args.action == "redrive":
            ids = args.ids or [event.id for event in await store.events(states=(FAILED,), function=args.function,
                                                                         limit=1_000_000)]
            redriven = await store.redrive(ids, now())
            for missing in sorted(set(args.ids) - set(redriven)):
                print(f"lambdalet events: {missing}: no failed event with this id", file=sys.stderr)
            print(f"{len(redriven)} event{'s' if len(redriven) != 1 else ''} back in the queue")
            return 0 if len(redriven) == len(ids) else 1
        if args.action == "purge":
            deleted = await store.purge(states or (SUCCEEDED, FAILED), args.function)
            print(f"{deleted} event{'s' if deleted != 1 else ''} deleted")
            return 0
        found = await store.events(states=states, function=args.function, ids=args.ids, limit=args.limit)
        if args.action == "show":
            for event in found:
                print(json.dumps(_as_json(event), indent=2))
            missing = set(args.ids) - {event.id for event in found}
            for event_id in sorted(missing):
                print(f"lambdalet events: {event_id}: no such event", file=sys.stderr)
            return 1 if missing else 0
        if args.json:
            for event in found:
                print(json.dumps(_as_json(event)))
            return 0
        print(_table(found, await store.counts()))
        return 0
    finally:
        await store.aclose()


def _as_json(event: Event) -> dict:
    shown = {
        "id": event.id, "kind": event.kind, "function": event.function, "state": SHOWN.get(event.state, event.state),
        "attempts": event.attempts, "enqueued": _when(event.enqueued), "due": _when(event.due),
        "finished": _when(event.finished) if event.finished else None, "result": event.result,
        "payload": event.payload.decode(errors="replace"),
    }
    if event.target:
        shown["target"] = event.target
    if event.request:
        shown["request"] = event.request
    return shown


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _table(found: list[Event], counts: dict[tuple[str, str, str], int]) -> str:
    totals: dict[str, int] = {}
    for (_, _, state), count in counts.items():
        totals[state] = totals.get(state, 0) + count
    lines = ["  ".join(f"{totals.get(state, 0)} {SHOWN.get(state, state)}" for state in (QUEUED, RUNNING, SUCCEEDED,
                                                                                         FAILED))]
    if not found:
        return lines[0]
    moment = now()
    rows = [("ID", "FUNCTION", "STATE", "ATTEMPTS", "AGE", "RESULT")]
    for event in found:
        what = event.function if event.kind != DELIVER else f"{event.function} -> {event.target}"
        age = (event.finished or moment) - event.enqueued
        rows.append((event.id, what, SHOWN.get(event.state, event.state), str(event.attempts), f"{age:.1f}s",
                     event.result or ""))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    return "\n".join(lines)
