"""Reloading while serving: when a function's code, one of its layers, or the file its functions
were read from (a template, the templates it nests, a config file, an env-vars file) changes, the
server applies the functions as they are now (`Server.apply`).

* A change to the source file reads it again: functions added to it appear, removed ones disappear
  (their invocations get ResourceNotFoundException), and one whose configuration changed (memory,
  environment, handler...) is a new version of itself from its next invocation on.
* A change under a function's code directory or a layer makes the functions using it new versions:
  the next invocation runs the new code. Invocations in flight finish on the old environments; the
  idle ones stop at once (under SnapStart, the template and the staged copy too, and the new version
  builds its template from the new code).
* A source that can no longer be read leaves the functions as they were and says why, in one line;
  the next change that makes it readable again applies.

Changes are told by inotify (codewatch.py), never by polling; a burst of writes (an editor saving a
file writes it several times) is read as one change once the files have been quiet for
`QUIET_SECONDS`. What each reload did is printed, and kept for those waiting on it (`wait_reload`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import trio

from .codewatch import CodeWatch, code_stamp
from .config import ConfigError, FunctionConfig
from .server import Changes, Server
from .sources import Loaded

log = logging.getLogger("lambdalet")

QUIET_SECONDS = 0.05  # an editor's save is a few writes and a rename within milliseconds
BURST_LIMIT_SECONDS = 1.0  # files that never go quiet are read again this long after the first change


@dataclass(frozen=True, slots=True)
class Reload:
    """One reload: what it changed, or why the source could not be read (nothing changed then)."""

    changes: Changes = Changes()
    error: str | None = None
    problems: list[str] = field(default_factory=list)


def trees(function: FunctionConfig) -> tuple[str, ...]:
    """What a function is made of on disk: its code directory, then its layers."""
    return (os.path.abspath(function.code), *(os.path.abspath(layer) for layer in function.layers))


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree + os.sep)


class Reloader:
    """Watches what `server`'s functions came from and applies them again when it changes. `loaded`
    is what `source` gave when the server started."""

    def __init__(self, server: Server, source, loaded: Loaded, *, name: str = "") -> None:
        self.server = server
        self.source = source
        self.loaded = loaded  # as last read without error
        self.name = name  # how messages call the source ("template.yaml")
        self.reloads: list[Reload] = []
        self._reloaded = trio.Event()
        self._stamps: dict[str, tuple] = {}  # function -> its trees' file stamps when it was (re)started
        self._pending: set[str] = set()  # functions whose code changed while the source could not be read

    async def wait_reload(self, count: int = 1) -> Reload:
        """The `count`-th reload since start (1: the first), once it is done."""
        while len(self.reloads) < count:
            await self._reloaded.wait()
        return self.reloads[count - 1]

    def _watched(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(trees, files): every function's code and layers and the source's directories; its files."""
        source_dirs = tuple(path for path in self.loaded.watched if os.path.isdir(path))
        files = tuple(path for path in self.loaded.watched if path not in source_dirs)
        code = {tree for function in self.loaded.functions for tree in trees(function)}
        return (*sorted(code), *source_dirs), files

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        watch = CodeWatch(*self._watched())
        try:
            self._stamp(self.loaded.functions)
            task_status.started(self)
            if not watch.watching:
                log.warning("lambdalet: not watching the functions' files (no inotify, or its limit of watches is "
                            "reached): a change needs a restart")
                await trio.sleep_forever()
            while True:
                changed = await watch.wait()
                with trio.move_on_after(BURST_LIMIT_SECONDS):
                    while True:
                        with trio.move_on_after(QUIET_SECONDS) as quiet:
                            changed |= await watch.wait()
                        if quiet.cancelled_caught:
                            break
                await self._reload(changed)
                watch.update(*self._watched())
        finally:
            watch.close()

    def _stamp(self, functions: list[FunctionConfig]) -> None:
        for function in functions:
            self._stamps[function.name] = code_stamp(trees(function))

    async def _reload(self, changed: set[str]) -> None:
        self._pending |= self._code_changed(changed)
        reread = any(path in self.loaded.watched or any(_under(path, watched) for watched in self.loaded.watched)
                     for path in changed)
        error = None
        loaded = self.loaded
        if reread:
            try:
                loaded = self.source.load()
            except ConfigError as exc:
                error = str(exc)
        try:
            changes = await self.server.apply(loaded.functions, code_changed=frozenset(self._pending),
                                              apis=loaded.apis)
        except Exception as exc:  # two functions answer to one name, a new version cannot start: nothing swapped
            error, loaded = str(exc), self.loaded
            changes = await self.server.apply(loaded.functions, code_changed=frozenset(self._pending),
                                              apis=loaded.apis)
        if error is not None:
            log.warning("lambdalet: %s; still serving the functions as they were%s", error,
                        f" ({changes})" if changes else "")
        else:
            new_problems = [problem for problem in loaded.problems if problem not in self.loaded.problems]
            for problem in new_problems:
                log.warning("lambdalet: %s", problem)
            log.warning("lambdalet: reloaded%s: %s", f" {self.name}" if self.name else "", changes)
        self._pending.clear()
        self.loaded = loaded
        self._stamp([function for function in loaded.functions
                     if function.name in changes.added + changes.replaced])
        for name in changes.removed:
            self._stamps.pop(name, None)
        self.reloads.append(Reload(changes, error, list(loaded.problems)))
        self._reloaded.set()
        self._reloaded = trio.Event()

    def _code_changed(self, changed: set[str]) -> set[str]:
        """The functions whose code or layers changed under `changed` (by their files' stamps: a file
        written with what it had, or created and removed again, changes nothing)."""
        found = set()
        stamps: dict[tuple[str, ...], tuple] = {}
        for function in self.loaded.functions:
            made_of = trees(function)
            if not any(_under(path, tree) for path in changed for tree in made_of):
                continue
            if made_of not in stamps:
                stamps[made_of] = code_stamp(made_of)
            if stamps[made_of] != self._stamps.get(function.name):
                found.add(function.name)
        return found
