"""What a managed runtime brings besides its interpreter, made once per user and kept in a cache
directory ($LAMBDALET_CACHE, else $XDG_CACHE_HOME/lambdalet, else ~/.cache/lambdalet):

* `python_runtime_dir`: a Python runtime's /var/runtime: `bootstrap.py` (bootstrap/managed.py) and
  a copy of lambdalet's `bootstrap` package, and nothing else, so that the runtime directory on
  sys.path brings no other package of the host (as the parent of an installed or checked-out
  package would). One directory per content of the package, compiled by each interpreter that
  runs it (the runtime sees it read-only);
* `runtime_libraries`: what a Python runtime includes besides its runtime client (boto3, botocore
  and their dependencies, snapshot-restore-py) at the versions of sandbox/runtimes.py, or all but
  the SDK, pip-installed (`--target`) for one Python version, compiled by that interpreter;
* `node_runtime_client`: the Node.js runtime interface client from npm (`aws-lambda-ric`, which
  builds a native addon on installation).

Concurrent servers and test processes wait for each other on a lock file per item; an item is
made in a scratch directory and renamed into place, so a half-made one is never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bootstrap

from .interpreters import Interpreter
from .runtimes import Runtime, label

log = logging.getLogger("lambdalet")

NODE_RIC_VERSION = "4.0.2"
PIP_TIMEOUT_S = 15  # per connection attempt: offline, pip gives up quickly


def cache_dir() -> Path:
    root = os.environ.get("LAMBDALET_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lambdalet")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Held while `name` is being made (by any process of this user)."""
    with open(cache_dir() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _put_in_place(scratch: Path, target: Path) -> None:
    try:
        scratch.rename(target)
    except OSError:  # made meanwhile by a process that did not lock (an older lambdalet)
        shutil.rmtree(scratch, ignore_errors=True)


# --- the Python runtime directory ---------------------------------------------------------------


def _package_files() -> list[Path]:
    package = Path(bootstrap.__file__).parent
    return sorted(path for path in package.glob("*.py"))


def python_runtime_dir(interpreter: Interpreter) -> Path:
    """The runtime directory of a Python runtime, compiled for `interpreter`."""
    files = _package_files()
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    target = cache_dir() / "runtime" / f"python-{digest.hexdigest()[:16]}"
    compiled = target.with_name(f"{target.name}.compiled-{interpreter.label}")  # beside it: not in /var/runtime
    if compiled.exists():
        return target
    with locked("runtime"):
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".making-", dir=target.parent))
            (scratch / "bootstrap").mkdir()
            for path in files:
                shutil.copy2(path, scratch / "bootstrap" / path.name)
            shutil.copy2(files[0].parent / "managed.py", scratch / "bootstrap.py")
            scratch.chmod(0o755)
            _put_in_place(scratch, target)
        if not compiled.exists():
            _compile(interpreter, target)
            compiled.touch()
    return target


def _compile(interpreter: Interpreter, directory: Path) -> None:
    """Byte-compile `directory` with `interpreter`: the runtime sees it read-only, and would
    otherwise compile every module at every cold start. Failures leave it uncompiled, not broken."""
    subprocess.run([interpreter.executable, "-S", "-m", "compileall", "-q", str(directory)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


# --- the runtime-included libraries -------------------------------------------------------------


class LibrariesUnavailable(Exception):
    """The libraries are not cached and cannot be installed; the message says why."""


def runtime_libraries(runtime: Runtime, interpreter: Interpreter, *, sdk: bool = True) -> Path:
    """The directory holding the libraries `runtime` includes (without its SDK unless `sdk`) for
    `interpreter`'s Python, installed from PyPI the first time. Raises LibrariesUnavailable
    (offline, no pip, ...)."""
    included = (*(runtime.sdk if sdk else ()), *runtime.libraries)
    pins = [f"{name}=={version}" for name, version in included]
    minor = ".".join(map(str, interpreter.version[:2]))
    target = cache_dir() / "libraries" / f"python{minor}-{'-'.join(f'{n}-{v}' for n, v in included)}"
    if target.is_dir():
        return target
    with locked("libraries"):
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log.warning("lambdalet: installing what %s includes (%s) from PyPI, once, into %s", runtime.id,
                    label(included), target)
        scratch = Path(tempfile.mkdtemp(prefix=".making-", dir=target.parent))
        pip = sys.executable if importlib.util.find_spec("pip") is not None else interpreter.executable
        try:
            installed = subprocess.run(
                [pip, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                 "--no-input", "--timeout", str(PIP_TIMEOUT_S), "--retries", "1", "--target", str(scratch),
                 "--python-version", minor, "--only-binary=:all:", *pins],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        except OSError as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise LibrariesUnavailable(f"pip cannot run: {exc}") from None
        if installed.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            said = (installed.stderr.strip().splitlines() or [f"exit status {installed.returncode}"])[-1]
            raise LibrariesUnavailable(f"pip install {' '.join(pins)} failed: {said}")
        shutil.rmtree(scratch / "bin", ignore_errors=True)  # console scripts, with this host's #! line
        _compile(interpreter, scratch)
        scratch.chmod(0o755)
        _put_in_place(scratch, target)
    return target


# --- the Node.js runtime interface client -------------------------------------------------------


class RuntimeClientUnavailable(Exception):
    """The Node.js runtime interface client is not cached and cannot be installed."""


def node_runtime_client() -> Path:
    """The directory holding node_modules/aws-lambda-ric, installed with npm the first time (its
    native addon takes a minute or two to build). Raises RuntimeClientUnavailable."""
    target = cache_dir() / f"node-ric-{NODE_RIC_VERSION}"
    entry = target / "node_modules" / "aws-lambda-ric" / "index.mjs"  # the package's "main"
    if entry.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeClientUnavailable(f"aws-lambda-ric {NODE_RIC_VERSION} is not in {target} and there is no npm "
                                       "to install it")
    with locked("node-ric"):
        if entry.exists():
            return target
        log.warning("lambdalet: installing the Node.js runtime interface client (aws-lambda-ric %s) from npm, once, "
                    "into %s (it builds a native addon: a minute or two)", NODE_RIC_VERSION, target)
        target.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"aws-lambda-ric@{NODE_RIC_VERSION}"],
            cwd=target, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if installed.returncode != 0 or not entry.exists():
            said = (installed.stderr.strip().splitlines() or [f"exit status {installed.returncode}"])[-1]
            raise RuntimeClientUnavailable(f"npm install aws-lambda-ric@{NODE_RIC_VERSION} failed: {said}")
    return target
