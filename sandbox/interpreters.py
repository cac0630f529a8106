"""Finding the interpreter a managed runtime runs on: exactly the runtime's Python minor version (or
Node.js major), never another one silently.

Where a Python 3.X is looked for, in order: what `--python-path 3.X=/path` gives; lambdalet's own
interpreter, if it is that version; `python3.X` on PATH (a pyenv shim is looked through: it is a
script that picks a version by its own rules); pyenv's versions ($PYENV_ROOT, else ~/.pyenv); uv's
managed Pythons (~/.local/share/uv/python). Node.js: `node` on PATH, then nvm's versions. Each
candidate is asked once what it is (one interpreter start-up, `-S`), and a virtual environment's
interpreter is replaced by its base interpreter: a function needs nothing from the venv.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

_ASK_PYTHON = ("import sys; print(*sys.version_info[:3]); print(sys.base_prefix); "
               "print(getattr(sys, '_base_executable', '') or sys.executable)")


@dataclass(frozen=True, slots=True)
class Interpreter:
    """An interpreter as found on the host: its real executable (a base interpreter, never a venv's),
    its version, and the installation it belongs to (shown at /var/lang where the runtime has a
    private file system). `prefix` is None where the executable does not lie inside an installation
    of its own: outside its prefix, or in the system's (/usr: shown at /var/lang it would move the
    system's own directories, /usr/bin on Lambda's PATH among them)."""

    executable: str
    version: tuple[int, ...]
    prefix: str | None

    @property
    def label(self) -> str:
        return ".".join(map(str, self.version))


class InterpreterMissing(LookupError):
    """No interpreter of the version a runtime needs; the message says which and how to get one."""


@functools.cache
def ask_python(path: str) -> Interpreter | None:
    """What the Python at `path` is (None if it does not run)."""
    try:
        answer = subprocess.run([path, "-S", "-c", _ASK_PYTHON], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL,
                                env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = answer.stdout.splitlines()
    if answer.returncode != 0 or len(lines) != 3:
        return None
    version = tuple(int(part) for part in lines[0].split())
    executable = os.path.realpath(lines[2])
    return Interpreter(executable, version, _own_prefix(os.path.realpath(lines[1]), executable))


SYSTEM_PREFIXES = frozenset({"/", "/usr", "/usr/local"})


def _own_prefix(prefix: str | None, executable: str) -> str | None:
    if prefix is None or prefix in SYSTEM_PREFIXES or not executable.startswith(prefix.rstrip("/") + "/"):
        return None
    return prefix


@dataclass(frozen=True, slots=True)
class Places:
    """Where interpreters are looked for: PATH, pyenv's root, uv's managed Pythons."""

    path: str
    pyenv: str
    uv: str

    @classmethod
    def of_this_user(cls) -> Places:
        data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return cls(os.environ.get("PATH", os.defpath), os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"),
                   os.path.join(data, "uv", "python"))


def _newest(paths: list[str], pattern: str) -> list[str]:
    """`paths` whose version (matched by `pattern`'s group) is a plain release, newest first."""
    found = []
    for path in paths:
        match = re.search(pattern, path)
        if match:
            found.append((tuple(int(p) for p in match.group(1).split(".")), path))
    return [path for _, path in sorted(found, reverse=True)]


def python_candidates(minor: str, places: Places) -> list[str]:
    """Where a Python `minor` ("3.12") may be, most wanted first (not yet asked)."""
    name = f"python{minor}"
    found = []
    if "{}.{}".format(*sys.version_info[:2]) == minor:
        found.append(getattr(sys, "_base_executable", "") or sys.executable)
    on_path = shutil.which(name, path=places.path)
    if on_path is not None and os.path.dirname(on_path) != os.path.join(places.pyenv, "shims"):
        found.append(on_path)
    found += _newest(glob.glob(os.path.join(places.pyenv, "versions", f"{minor}.*", "bin", name)),
                     rf"/versions/({re.escape(minor)}\.\d+)/bin/")
    found += _newest(glob.glob(os.path.join(places.uv, f"cpython-{minor}.*", "bin", name)),
                     rf"/cpython-({re.escape(minor)}\.\d+)-[^/]*/bin/")
    return found


def find_python(minor: str, given: str | None = None, places: Places | None = None) -> Interpreter:
    """The Python `minor` ("3.12"): `given` (a path the user named) or the first candidate that is
    that version (in `places`, by default this user's). Raises InterpreterMissing saying where it
    looked and how to get one."""
    if given is not None:
        found = ask_python(given)
        if found is None:
            raise InterpreterMissing(f"--python-path {minor}={given}: not a Python interpreter that runs")
        if "{}.{}".format(*found.version[:2]) != minor:
            raise InterpreterMissing(f"--python-path {minor}={given}: that is Python {found.label}, not {minor}")
        return found
    places = places or Places.of_this_user()
    for candidate in python_candidates(minor, places):
        found = ask_python(candidate)
        if found is not None and "{}.{}".format(*found.version[:2]) == minor:
            return found
    raise InterpreterMissing(
        f"Python {minor} is not on this machine: not on PATH (python{minor}), not under pyenv "
        f"({places.pyenv}/versions), not under uv ({places.uv}), and not given with --python-path "
        f"{minor}=/path/to/python{minor}. Install it (`pyenv install {minor}`, `uv python install {minor}`, or your "
        f"system's python{minor} package), or run the function on another version with --allow-other-python")


def own_python() -> Interpreter:
    """lambdalet's own interpreter (its base, if lambdalet runs in a virtual environment)."""
    found = ask_python(getattr(sys, "_base_executable", "") or sys.executable)
    if found is None:  # it is running this very code
        raise InterpreterMissing(f"lambdalet's own interpreter {sys.executable} cannot be started")
    return found


@functools.cache
def ask_node(path: str) -> Interpreter | None:
    try:
        answer = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", answer.stdout.strip())
    if answer.returncode != 0 or match is None:
        return None
    executable = os.path.realpath(path)
    bin_dir = os.path.dirname(executable)
    prefix = os.path.dirname(bin_dir) if os.path.basename(bin_dir) == "bin" else None
    return Interpreter(executable, tuple(int(part) for part in match.groups()), _own_prefix(prefix, executable))


def find_node(major: int) -> Interpreter:
    """Node.js `major`: `node` on PATH, then nvm's. Raises InterpreterMissing."""
    nvm = os.environ.get("NVM_DIR") or os.path.expanduser("~/.nvm")
    candidates = [path for path in [shutil.which("node")] if path]
    candidates += _newest(glob.glob(os.path.join(nvm, "versions", "node", f"v{major}.*", "bin", "node")),
                          rf"/v({major}\.\d+\.\d+)/bin/")
    seen = []
    for candidate in candidates:
        found = ask_node(candidate)
        if found is None:
            continue
        if found.version[0] == major:
            return found
        seen.append(f"{candidate} is v{found.label}")
    where = f" ({'; '.join(seen)})" if seen else ""
    raise InterpreterMissing(
        f"Node.js {major} is not on this machine{where}: install it (`nvm install {major}`, or your system's "
        f"nodejs {major} package) and put its `node` on PATH, or choose the runtime of the Node.js you have")
