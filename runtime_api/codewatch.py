"""Whether a function's code (its code directory and layers) changed: asked at every SnapStart
restore (runtime_api/snapstart.py), so the cheap question comes first; and, waited for, which files
changed (`CodeWatch.wait`, for reloading while serving: runtime_api/reload.py).

`CodeWatch(trees).changed()` is True when anything under the trees was written, created, removed,
renamed or touched since the last call: inotify answers without a walk over every file of the
code and its layers (a vendored botocore is some 2,000 files; the walk and the inotify read are
both measured in benchmarks/results/costs.md). Only then does the caller look for itself: `code_stamp` walks the
trees for every file's size and mtime, and `content_hash` reads the files whose stamps moved.
Without inotify (not on this system, or the per-user limit of watches reached) `changed` is always
True, so nothing is ever missed, only the walk is not saved. Changes made where the kernel cannot
see them (a network file system changed from another host) are not reported either: the template
is then rebuilt at the latest when the next copy is staged, which checks by walking.

`wait()` says which paths changed: files under the trees, and the single `files` given (a template,
a config file: their directories are watched, not the files, because an editor saving a file often
writes a new one and renames it over the old). What editors and imports write beside the code is not
a change: `__pycache__`, and the swap, backup and lock files of vim (`.app.py.swp`, `4913`) and
emacs (`app.py~`, `.#app.py`, `#app.py#`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import struct

import trio

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
# Every way a file or directory changes: written, metadata (touch, chmod), created, removed, renamed.
_MASK = (0x002 | 0x004 | 0x008 | 0x100 | 0x200 | 0x040 | 0x080 | 0x400 | 0x800)
_SKIPPED = "__pycache__"  # what imports write at isolation none; not part of the code's content
_IN_Q_OVERFLOW = 0x4000  # the kernel dropped events: anything may have changed
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name, NUL-padded)


def transient(name: str) -> bool:
    """An editor's swap, backup or lock file, or compiled bytecode: not part of the code."""
    return (name == _SKIPPED or name.endswith((".pyc", "~", ".swp", ".swx", ".swo")) or name == "4913"
            or name.startswith(".#") or (name.startswith("#") and name.endswith("#")))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 (present, or AttributeError)
        return libc
    except (OSError, AttributeError):
        return None


class CodeWatch:
    def __init__(self, trees: tuple[str, ...], files: tuple[str, ...] = ()) -> None:
        self._trees = tuple(os.path.abspath(tree) for tree in trees)
        self._files = frozenset(os.path.abspath(file) for file in files)
        self._directories: dict[int, str] = {}  # watch descriptor -> its directory
        libc = _libc()
        self._fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC) if libc is not None else -1
        if self._fd >= 0 and not self._watch_all():
            self.close()

    def update(self, trees: tuple[str, ...], files: tuple[str, ...] = ()) -> None:
        """Watch these from now on instead (what was watched before and is no more goes unreported)."""
        self._trees = tuple(os.path.abspath(tree) for tree in trees)
        self._files = frozenset(os.path.abspath(file) for file in files)
        if self._fd >= 0 and not self._watch_all():
            self.close()

    @property
    def watching(self) -> bool:
        """False without inotify (or past its limit of watches): `wait` would never return."""
        return self._fd >= 0

    def _watch_all(self) -> bool:
        """A watch on every directory of the trees, and on the directory of each file (again: one on
        a directory already watched is the same watch). False when the kernel refuses one."""
        libc = _libc()
        roots = [root for tree in self._trees for root, _, _ in _walk(tree)]
        roots += sorted({os.path.dirname(file) for file in self._files})
        for root in roots:
            wd = libc.inotify_add_watch(self._fd, os.fsencode(root), _MASK)
            if wd < 0:
                if not os.path.isdir(root):
                    continue  # gone meanwhile (or not there yet)
                return False
            self._directories[wd] = root
        return True

    async def wait(self) -> set[str]:
        """Once something changed: the changed paths (a tree itself when the kernel lost track)."""
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            changed = self._read()
            if changed:
                return changed

    def _read(self) -> set[str]:
        changed: set[str] = set()
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                break
            offset = 0
            while offset < len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, offset)
                name = os.fsdecode(data[offset + _EVENT.size:offset + _EVENT.size + size].rstrip(b"\0"))
                offset += _EVENT.size + size
                if mask & _IN_Q_OVERFLOW:
                    changed.update(self._trees, self._files)
                elif wd in self._directories and not transient(name):
                    path = os.path.join(self._directories[wd], name) if name else self._directories[wd]
                    if self._concerns(path):
                        changed.add(path)
        if changed and not self._watch_all():  # new directories get watches of their own
            self.close()
        return changed

    def _concerns(self, path: str) -> bool:
        return path in self._files or any(path == tree or path.startswith(tree + os.sep) for tree in self._trees)

    def changed(self) -> bool:
        if self._fd < 0:
            return True
        seen = False
        while True:
            try:
                if not os.read(self._fd, 1 << 16):
                    break
            except BlockingIOError:
                break
            seen = True
        if seen and not self._watch_all():  # new directories get watches of their own
            self.close()
        return seen

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def _walk(tree: str):
    for root, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d != _SKIPPED]
        yield root, dirs, files


def code_stamp(trees: tuple[str, ...]) -> tuple[tuple[tuple[str, int, int], ...], ...]:
    """Per tree (the code, then each layer in Lambda's order), every file's (path, size, mtime):
    what tells a change without reading the files."""
    stamps = []
    for tree in trees:
        found = []
        for root, _, files in _walk(tree):
            for name in files:
                if transient(name):
                    continue
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                found.append((path, st.st_size, st.st_mtime_ns))
        found.sort()
        stamps.append(tuple(found))
    return tuple(stamps)


def content_hash(trees: tuple[str, ...], stamp: tuple, configuration: bytes) -> str:
    """The template's content hash: the function's configuration (handler, runtime command,
    memory, timeout, environment, layers: config.snapstart_configuration), and every file `stamp`
    (the trees' code_stamp) lists, tree by tree (paths relative to their tree, and bytes)."""
    digest = hashlib.sha256(configuration)
    for index, (tree, files) in enumerate(zip(trees, stamp)):
        digest.update(b"\0tree %d\0" % index)  # a file moved between two trees changes the hash
        for path, _, _ in files:
            digest.update(b"\0" + os.path.relpath(path, tree).encode(errors="surrogateescape") + b"\0")
            try:
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                continue
    return digest.hexdigest()
