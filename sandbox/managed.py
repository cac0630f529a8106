"""A function's managed runtime as it runs on this host: which interpreter, which runtime client,
which bundled SDK, and where the runtime sees them.

Lambda's layout, which `standard` and `strict` reproduce with read-only binds in the environment's
mount namespace (sandbox/isolation.py, `PrivateFilesystem.shown`):

    /var/lang                                the interpreter's installation (its prefix)
    /var/lang/lib/python3.X/site-packages    the libraries the runtime includes: boto3 and the rest
                                             (--sdk none: all but the SDK), hiding whatever the host
                                             installed there
    /var/runtime                             the runtime client (LAMBDA_RUNTIME_DIR)

At `none` the runtime sees the same things at their host paths. Every path here is a host path;
`PrivateFilesystem.present` shows them where the runtime sees them.

* python3.X: `python3.X -S /var/runtime/bootstrap.py SDK` (bootstrap/managed.py), the interpreter
  of exactly that version (sandbox/interpreters.py; `allow_other_python` runs lambdalet's own
  instead, with a warning naming both);
* nodejs*.x: `node /var/runtime/node_modules/aws-lambda-ric/index.mjs`, with the node of that major;
* provided.*: the function's own `bootstrap` (the code's, else a layer's /opt/bootstrap), as Lambda
  starts it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import layers as opt
from . import runtime_cache
from .interpreters import Interpreter, InterpreterMissing, find_node, find_python, own_python
from .isolation import LANG_DIR, RUNTIME_DIR
from .runtimes import Family, Runtime, UnknownRuntime, for_python, label, lookup


class RuntimeUnavailable(ValueError):
    """The function's runtime cannot be had on this host; the message names the function, says what
    is missing and how to get it."""


@dataclass(frozen=True, slots=True)
class SdkChoice:
    """`--sdk`: `bundled` (the runtime's, installed once), `none` (only the runtime's other included
    libraries), or a directory of the user's holding all it should include."""

    value: str = "bundled"

    def __post_init__(self) -> None:
        if self.value not in ("bundled", "none") and not os.path.isdir(self.value):
            raise ValueError(f"--sdk {self.value}: not `bundled`, `none`, nor a directory")


@dataclass(frozen=True, slots=True)
class ManagedRuntime:
    """What `prepare` found for one function."""

    runtime: Runtime
    argv: tuple[str, ...]
    runtime_dir: str  # LAMBDA_RUNTIME_DIR
    interpreter: Interpreter | None = None
    sdk: str | None = None  # the directory of the SDK on sys.path, if any
    shown: tuple[tuple[str, str], ...] = ()  # (host directory, where the runtime sees it), bind order
    notes: tuple[str, ...] = ()  # warnings for the start-up log, one line each
    own_client: bool = False  # lambdalet's Python runtime client (which SnapStart can fork)

    @property
    def bin_dir(self) -> str | None:
        """The interpreter's directory, first on PATH (Lambda's /var/lang/bin); None for a system
        interpreter (in /usr/bin, on PATH already)."""
        if self.interpreter is None or self.interpreter.prefix is None:
            return None
        return os.path.dirname(self.interpreter.executable)

    @property
    def lib_dir(self) -> str | None:
        """The interpreter's libraries, first on LD_LIBRARY_PATH (Lambda's /var/lang/lib)."""
        if self.interpreter is None or self.interpreter.prefix is None:
            return None
        return os.path.join(self.interpreter.prefix, "lib")


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How to find what a runtime needs: `interpreters` maps "3.12" to a Python the user named
    (`--python-path`), `allow_other_python` runs a missing version on lambdalet's own."""

    interpreters: dict[str, str] = field(default_factory=dict)
    allow_other_python: bool = False
    sdk: SdkChoice = field(default_factory=SdkChoice)


def default_runtime_id() -> str:
    """The Python runtime of lambdalet's own version: a function given neither a runtime nor a
    command runs on it."""
    found = for_python(own_python().version[:2])
    if found is None:
        raise RuntimeUnavailable(f"lambdalet runs on Python {own_python().label}, which no Lambda runtime has: give "
                                 "the function a runtime (--runtime python3.12)")
    return found.id


def prepare(runtime_id: str, function: str, code: str, layers: tuple[str, ...],
            options: RuntimeOptions = RuntimeOptions()) -> ManagedRuntime:
    """Find and make ready what `runtime_id` needs to run `function` (its code directory and layers
    as host paths). Raises RuntimeUnavailable."""
    try:
        runtime = lookup(runtime_id, function)
    except UnknownRuntime as exc:
        raise RuntimeUnavailable(str(exc)) from None
    try:
        if runtime.family is Family.PYTHON:
            return _python(runtime, function, options)
        if runtime.family is Family.NODEJS:
            return _nodejs(runtime, function)
    except InterpreterMissing as exc:
        raise RuntimeUnavailable(f"function {function}: runtime {runtime.id}: {exc}") from None
    return _provided(runtime, code, layers)


def _python(runtime: Runtime, function: str, options: RuntimeOptions) -> ManagedRuntime:
    notes = []
    try:
        interpreter = find_python(runtime.python, options.interpreters.get(runtime.python))
    except InterpreterMissing:
        if not options.allow_other_python or runtime.python in options.interpreters:
            raise
        interpreter = own_python()
        notes.append(f"function {function}: runtime {runtime.id} runs on Python {interpreter.label} "
                     f"({interpreter.executable}), not Python {runtime.python}: --allow-other-python")
    runtime_dir = str(runtime_cache.python_runtime_dir(interpreter))
    sdk = None
    if options.sdk.value in ("bundled", "none"):
        bundled = options.sdk.value == "bundled"
        try:
            sdk = str(runtime_cache.runtime_libraries(runtime, interpreter, sdk=bundled))
        except runtime_cache.LibrariesUnavailable as exc:
            missing = label((*(runtime.sdk if bundled else ()), *runtime.libraries))
            consequence = ", so `import boto3` fails as in a function that bundles nothing" if bundled else ""
            notes.append(f"function {function}: runs without what {runtime.id} includes ({missing}){consequence}: "
                         f"it is not cached and {exc}")
    else:
        sdk = os.path.realpath(options.sdk.value)
    shown: list[tuple[str, str]] = []
    if interpreter.prefix is not None:
        shown.append((interpreter.prefix, LANG_DIR))
        minor = ".".join(map(str, interpreter.version[:2]))
        site_packages = os.path.join("lib", f"python{minor}", "site-packages")
        if os.path.isdir(os.path.join(interpreter.prefix, site_packages)):
            # Over whatever the host installed there: the SDK, or nothing.
            shown.append((sdk or str(_empty_dir()), os.path.join(LANG_DIR, site_packages)))
    shown.append((runtime_dir, RUNTIME_DIR))
    argv = (interpreter.executable, "-S", os.path.join(runtime_dir, "bootstrap.py"), *([sdk] if sdk else []))
    return ManagedRuntime(runtime, argv, runtime_dir, interpreter, sdk, tuple(shown), tuple(notes), own_client=True)


def _nodejs(runtime: Runtime, function: str) -> ManagedRuntime:
    node = find_node(runtime.version[0])
    try:
        client = str(runtime_cache.node_runtime_client())
    except runtime_cache.RuntimeClientUnavailable as exc:
        raise RuntimeUnavailable(f"function {function}: runtime {runtime.id} needs the Node.js runtime interface "
                                 f"client: {exc}") from None
    shown = ((node.prefix, LANG_DIR),) if node.prefix is not None else ()
    entry = os.path.join(client, "node_modules", "aws-lambda-ric", "index.mjs")
    return ManagedRuntime(runtime, (node.executable, entry), client, node, shown=(*shown, (client, RUNTIME_DIR)))


def _provided(runtime: Runtime, code: str, layers: tuple[str, ...]) -> ManagedRuntime:
    """Lambda starts /var/task/bootstrap, else /opt/bootstrap (a layer's)."""
    bootstrap = os.path.join(code, "bootstrap")
    if not os.path.lexists(bootstrap) and opt.host_path(layers, "/opt/bootstrap") != "/opt/bootstrap":
        bootstrap = opt.host_path(layers, "/opt/bootstrap")
    return ManagedRuntime(runtime, (bootstrap,), RUNTIME_DIR)


def _empty_dir():
    path = runtime_cache.cache_dir() / "empty"
    path.mkdir(mode=0o755, exist_ok=True)
    return path
